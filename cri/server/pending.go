package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/enroot-cri/enroot-cri/cgroups"
	"github.com/enroot-cri/enroot-cri/internal/atomicfile"
	"github.com/enroot-cri/enroot-cri/internal/logging"
)

// pendingCgroup is written before a container's cgroup is made and removed once the
// container's record holds the cgroup (or the create is undone): a daemon killed in
// between finds at its next start which cgroup no record owns.
type pendingCgroup struct {
	ContainerID string   `json:"container_id"`
	Path        string   `json:"cgroup_path"`
	Parents     []string `json:"cgroup_parents,omitempty"` // ancestors the create will make
}

func (s *Server) pendingDir() string { return filepath.Join(s.cfg.State, "pending") }

func (s *Server) pendingFile(id string) string {
	return filepath.Join(s.pendingDir(), id+".json")
}

// notePending records the cgroup a create is about to make.
func (s *Server) notePending(p pendingCgroup) error {
	if err := os.MkdirAll(s.pendingDir(), 0o700); err != nil {
		return fmt.Errorf("create pending directory: %w", err)
	}
	return atomicfile.WriteJSON(s.pendingFile(p.ContainerID), p)
}

// donePending forgets a pending cgroup: its container's record owns it, or it is gone.
func (s *Server) donePending(id string) error {
	if err := os.Remove(s.pendingFile(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove pending record of %s: %w", id, err)
	}
	return nil
}

// removePendingCgroups kills and removes the cgroups that creates interrupted by a
// crash made and no record owns.
func (s *Server) removePendingCgroups(ctx context.Context) error {
	entries, err := os.ReadDir(s.pendingDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list pending cgroups: %w", err)
	}
	var errs []error
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		if _, err := s.recs.container(id); err == nil {
			errs = append(errs, s.donePending(id))
			continue
		}
		data, err := os.ReadFile(filepath.Join(s.pendingDir(), e.Name()))
		var p pendingCgroup
		if err == nil {
			err = json.Unmarshal(data, &p)
		}
		if err != nil || p.Path == "" || !strings.Contains(path.Base(p.Path), id) {
			// Not ours to act on: a cgroup path must name the container.
			logging.From(ctx).Warn("ignoring an unreadable pending cgroup record", "file", e.Name(), "error", err)
			errs = append(errs, s.donePending(id))
			continue
		}
		logging.From(ctx).Info("removing the cgroup of an interrupted create", "container_id", id, "cgroup", p.Path)
		if cg, err := cgroups.Load(p.Path); err == nil {
			_ = cg.KillAll(killWait)
			if err := cg.Delete(); err != nil {
				errs = append(errs, err)
				continue
			}
		} else if !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		cgroups.RemoveAncestors(p.Parents)
		errs = append(errs, s.donePending(id))
	}
	return errors.Join(errs...)
}
