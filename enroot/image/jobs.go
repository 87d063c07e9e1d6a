package image

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/enroot-cri/enroot-cri/errdefs"
)

// Slurm job steps get the store's images as hard links: Jobs/<uid>/<job>.<step>.sqsh,
// the same inode as the store's file, in a directory owned by the job's user with mode
// 0500 under the root-owned Jobs (0711, not listable). Only that user (and root) can
// open the link; the file behind it is 0644, but the store's own directory is 0700, so
// the link is the only way in. The link is also the hold: an image with a link is not
// removed (RemoveImage, and so the kubelet's image garbage collection, fails with
// FailedPrecondition) until the step releases it; after a restart the holds are found
// again from the links.

// jobPart is what a Slurm job or step ID may be here.
var jobPart = regexp.MustCompile(`^[0-9A-Za-z_-]{1,64}$`)

// jobLinks are the links handed to job steps, by "<uid>/<job>.<step>".
type jobLinks struct {
	mu    sync.Mutex
	links map[string]inode
}

// JobStep names one step of a Slurm job of a user.
type JobStep struct {
	UID, GID  uint32
	Job, Step string
}

func (j JobStep) key() string      { return fmt.Sprintf("%d/%s.%s", j.UID, j.Job, j.Step) }
func (j JobStep) linkName() string { return j.Job + "." + j.Step + ".sqsh" }

// Validate checks the job and step IDs.
func (j JobStep) Validate() error {
	if !jobPart.MatchString(j.Job) {
		return fmt.Errorf("the Slurm job ID %q is not valid; allowed: 1 to 64 letters, digits, _ and -: %w", j.Job, errdefs.ErrInvalidArgument)
	}
	if !jobPart.MatchString(j.Step) {
		return fmt.Errorf("the Slurm step ID %q is not valid; allowed: 1 to 64 letters, digits, _ and -: %w", j.Step, errdefs.ErrInvalidArgument)
	}
	return nil
}

// HandToJob gives job step js the Enroot-layout file of image id (EnrootFile) as a link
// only the step's user can open, and returns the link's path. The image stays until
// ReleaseJob.
func (s *Store) HandToJob(ctx context.Context, id string, js JobStep) (string, error) {
	if err := js.Validate(); err != nil {
		return "", err
	}
	if s.opts.Jobs == "" {
		return "", fmt.Errorf("the store has no job directory: %w", errdefs.ErrFailedPrecondition)
	}
	file, err := s.EnrootFile(ctx, id)
	if err != nil {
		return "", err
	}
	img, err := s.Get(id)
	if err != nil {
		return "", err
	}
	if img.Source == SourceShared {
		return file, nil // the site's file, readable as the site made it; nothing to hold
	}
	// The store's lock orders the link against Remove: an image being removed is not
	// handed out, and one handed out is not removed.
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.byID[img.ID]; !ok {
		return "", fmt.Errorf("image %s was removed: %w", img.ID, errdefs.ErrNotFound)
	}
	userDir, err := s.jobUserDir(js.UID, js.GID)
	if err != nil {
		return "", err
	}
	defer unix.Close(userDir)
	name := js.linkName()
	if err := unix.Unlinkat(userDir, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return "", fmt.Errorf("replace %s: %w", name, err)
	}
	if err := unix.Linkat(unix.AT_FDCWD, file, userDir, name, 0); err != nil {
		if errors.Is(err, unix.EXDEV) {
			return "", fmt.Errorf("link %s into %s: the job directory must be on the image store's filesystem: %w", file, s.opts.Jobs, err)
		}
		return "", fmt.Errorf("link %s for job step %s: %w", file, js.key(), err)
	}
	var st unix.Stat_t
	if err := unix.Fstatat(userDir, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return "", fmt.Errorf("stat the link of job step %s: %w", js.key(), err)
	}
	s.jobs.mu.Lock()
	if s.jobs.links == nil {
		s.jobs.links = map[string]inode{}
	}
	s.jobs.links[js.key()] = inode{uint64(st.Dev), st.Ino} //nolint:unconvert // Dev is not uint64 everywhere
	s.jobs.mu.Unlock()
	return filepath.Join(s.opts.Jobs, strconv.FormatUint(uint64(js.UID), 10), name), nil
}

// ReleaseJob removes the links of job step js (of every step of the job when js.Step
// is "") and returns how many there were; releasing twice is not an error.
func (s *Store) ReleaseJob(js JobStep) (int, error) {
	if js.Step == "" {
		if err := (JobStep{Job: js.Job, Step: "0"}).Validate(); err != nil {
			return 0, err
		}
	} else if err := js.Validate(); err != nil {
		return 0, err
	}
	if s.opts.Jobs == "" {
		return 0, nil
	}
	uidDir := filepath.Join(s.opts.Jobs, strconv.FormatUint(uint64(js.UID), 10))
	fd, err := unix.Open(uidDir, unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", uidDir, err)
	}
	defer unix.Close(fd)
	prefix := fmt.Sprintf("%d/%s.", js.UID, js.Job)
	s.jobs.mu.Lock()
	defer s.jobs.mu.Unlock()
	n := 0
	for key := range s.jobs.links {
		if js.Step != "" && key != js.key() || js.Step == "" && !strings.HasPrefix(key, prefix) {
			continue
		}
		name := strings.TrimPrefix(key, fmt.Sprintf("%d/", js.UID)) + ".sqsh"
		if err := unix.Unlinkat(fd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return n, fmt.Errorf("remove %s/%s: %w", uidDir, name, err)
		}
		delete(s.jobs.links, key)
		n++
	}
	return n, nil
}

// JobHold is one link handed to a job step.
type JobHold struct {
	Step  JobStep
	Image string // image ID
	Path  string
}

// JobHolds lists the links handed to job steps and not yet released.
func (s *Store) JobHolds() []JobHold {
	s.mu.Lock()
	byInode := map[inode]string{}
	for _, img := range s.byID {
		for _, f := range []string{img.Squashfs, img.EnrootSquashfs} {
			if st, err := os.Stat(f); f != "" && err == nil {
				if in, ok := inodeOf(st); ok {
					byInode[in] = img.ID
				}
			}
		}
	}
	s.mu.Unlock()
	s.jobs.mu.Lock()
	defer s.jobs.mu.Unlock()
	var out []JobHold
	for key, in := range s.jobs.links {
		uidStr, jobStep, _ := strings.Cut(key, "/")
		uid, _ := strconv.ParseUint(uidStr, 10, 32)
		job, step, _ := strings.Cut(jobStep, ".")
		out = append(out, JobHold{Step: JobStep{UID: uint32(uid), Job: job, Step: step}, Image: byInode[in],
			Path: filepath.Join(s.opts.Jobs, key+".sqsh")})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// holding lists the job steps holding img. The caller holds s.mu.
func (j *jobLinks) holding(img *Image) []string {
	var inodes []inode
	for _, f := range []string{img.Squashfs, img.EnrootSquashfs} {
		if st, err := os.Stat(f); f != "" && err == nil {
			if in, ok := inodeOf(st); ok {
				inodes = append(inodes, in)
			}
		}
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	var jobs []string
	for key, in := range j.links {
		for _, want := range inodes {
			if in == want {
				jobs = append(jobs, key)
			}
		}
	}
	sort.Strings(jobs)
	return jobs
}

// jobUserDir opens (creating) Jobs/<uid>, owned by the user, mode 0500, without
// following links.
func (s *Store) jobUserDir(uid, gid uint32) (int, error) {
	jobs, err := unix.Open(s.opts.Jobs, unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open job directory %s: %w", s.opts.Jobs, err)
	}
	defer unix.Close(jobs)
	name := strconv.FormatUint(uint64(uid), 10)
	if err := unix.Mkdirat(jobs, name, 0o500); err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, fmt.Errorf("create %s/%s: %w", s.opts.Jobs, name, err)
	}
	fd, err := unix.Openat(jobs, name, unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open %s/%s: %w", s.opts.Jobs, name, err)
	}
	if err := unix.Fchown(fd, int(uid), int(gid)); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("chown %s/%s: %w", s.opts.Jobs, name, err)
	}
	if err := unix.Fchmod(fd, 0o500); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("chmod %s/%s: %w", s.opts.Jobs, name, err)
	}
	return fd, nil
}

// recoverJobs finds the links of a previous run again (the holds they are) and removes
// what is not such a link. It runs when the store opens, before any other use.
func (s *Store) recoverJobs() error {
	if s.opts.Jobs == "" {
		return nil
	}
	if err := os.MkdirAll(s.opts.Jobs, 0o711); err != nil {
		return fmt.Errorf("create job directory: %w", err)
	}
	if err := os.Chmod(s.opts.Jobs, 0o711); err != nil { //nolint:gosec // traversable, not listable: each user reaches only their own directory
		return fmt.Errorf("create job directory: %w", err)
	}
	images := map[inode]bool{}
	for _, img := range s.byID {
		for _, f := range []string{img.Squashfs, img.EnrootSquashfs} {
			if st, err := os.Stat(f); f != "" && err == nil {
				if in, ok := inodeOf(st); ok {
					images[in] = true
				}
			}
		}
	}
	users, err := os.ReadDir(s.opts.Jobs)
	if err != nil {
		return fmt.Errorf("list job directory: %w", err)
	}
	s.jobs.links = map[string]inode{}
	for _, u := range users {
		dir := filepath.Join(s.opts.Jobs, u.Name())
		if _, err := strconv.ParseUint(u.Name(), 10, 32); err != nil || !u.IsDir() {
			if err := os.RemoveAll(dir); err != nil {
				return fmt.Errorf("remove %s: %w", dir, err)
			}
			continue
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			return fmt.Errorf("list %s: %w", dir, err)
		}
		for _, e := range entries {
			path := filepath.Join(dir, e.Name())
			stem, isLink := strings.CutSuffix(e.Name(), ".sqsh")
			job, step, _ := strings.Cut(stem, ".")
			info, err := os.Lstat(path)
			var in inode
			if err == nil && isLink && info.Mode().IsRegular() && jobPart.MatchString(job) && jobPart.MatchString(step) {
				in, isLink = inodeOf(info)
				if isLink && images[in] {
					s.jobs.links[u.Name()+"/"+stem] = in
					continue
				}
			}
			if err := os.RemoveAll(path); err != nil {
				return fmt.Errorf("remove %s: %w", path, err)
			}
		}
	}
	return nil
}
