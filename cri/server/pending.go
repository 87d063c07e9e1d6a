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

	"google.golang.org/protobuf/encoding/protojson"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/internal/atomicfile"
	"github.com/enroot-cri/enroot-cri/internal/logging"
)

// pending is written before a create makes what lives outside the daemon (a
// container's cgroup; a pod's namespaces, PID holder and CNI address) and removed once
// the record owns it, or the create is undone: a daemon killed in between finds at its
// next start what no record owns, and removes it.
type pending struct {
	ID string `json:"id"`
	// A container's create: the cgroup it makes and the ancestors it will make.
	CgroupPath    string   `json:"cgroup_path,omitempty"`
	CgroupParents []string `json:"cgroup_parents,omitempty"`
	// A pod's create: its configuration (protojson), for the CNI DEL.
	PodConfig json.RawMessage `json:"pod_config,omitempty"`
}

func (s *Server) pendingDir() string { return filepath.Join(s.cfg.State, "pending") }

func (s *Server) pendingFile(id string) string {
	return filepath.Join(s.pendingDir(), id+".json")
}

// notePending records what a create is about to make.
func (s *Server) notePending(p pending) error {
	if err := os.MkdirAll(s.pendingDir(), 0o700); err != nil {
		return fmt.Errorf("create pending directory: %w", err)
	}
	return atomicfile.WriteJSON(s.pendingFile(p.ID), p)
}

// donePending forgets a pending create: its record owns what it made, or it is gone.
func (s *Server) donePending(id string) error {
	if err := os.Remove(s.pendingFile(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove pending record of %s: %w", id, err)
	}
	return nil
}

// removePending removes what creates interrupted by a crash made and no record owns.
// A pending record it cannot act on is logged and dropped: it must not keep the
// daemon from starting.
func (s *Server) removePending(ctx context.Context) error {
	entries, err := os.ReadDir(s.pendingDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list pending creates: %w", err)
	}
	var errs []error
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), atomicfile.TempPrefix) {
			_ = os.Remove(filepath.Join(s.pendingDir(), e.Name())) // a write a crash interrupted
			continue
		}
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		_, cerr := s.recs.container(id)
		_, perr := s.recs.pod(id)
		if cerr == nil || perr == nil {
			errs = append(errs, s.donePending(id))
			continue
		}
		data, err := os.ReadFile(filepath.Join(s.pendingDir(), e.Name()))
		var p pending
		if err == nil {
			err = json.Unmarshal(data, &p)
		}
		if err == nil && p.ID != id {
			err = fmt.Errorf("names %q", p.ID)
		}
		if err == nil {
			if p.PodConfig != nil {
				err = s.removePendingPod(ctx, p)
			} else {
				err = s.removePendingCgroup(ctx, p)
			}
		}
		if err != nil {
			logging.From(ctx).Warn("could not remove what an interrupted create made", "id", id, "error", err)
		}
		errs = append(errs, s.donePending(id))
	}
	return errors.Join(errs...)
}

// removePendingCgroup kills and removes the cgroup of an interrupted container create.
func (s *Server) removePendingCgroup(ctx context.Context, p pending) error {
	// Not ours to act on unless the cgroup's name is the container's.
	if p.CgroupPath == "" || !strings.Contains(path.Base(p.CgroupPath), p.ID) {
		return fmt.Errorf("cgroup path %q does not name container %s", p.CgroupPath, p.ID)
	}
	logging.From(ctx).Info("removing the cgroup of an interrupted container create", "container_id", p.ID, "cgroup", p.CgroupPath)
	if cg, err := s.cgroups.Load(p.CgroupPath); err == nil {
		_ = cg.KillAll(killWait)
		if err := cg.Delete(); err != nil {
			return err
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	s.cgroups.RemoveAncestors(p.CgroupParents)
	return nil
}

// removePendingPod releases the CNI address of an interrupted pod create and destroys
// its sandbox: PID holder, namespace pins, shm.
func (s *Server) removePendingPod(ctx context.Context, p pending) error {
	cfg := &runtimeapi.PodSandboxConfig{}
	if err := protojson.Unmarshal(p.PodConfig, cfg); err != nil {
		return fmt.Errorf("decode pod config: %w", err)
	}
	logging.From(ctx).Info("removing what an interrupted pod create made", "pod_id", p.ID)
	sb := s.sandboxes.Leftover(s.podDir(p.ID))
	var errs []error
	if cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork() != runtimeapi.NamespaceMode_NODE {
		rec := &podRecord{ID: p.ID, Sandbox: *sb, config: cfg}
		errs = append(errs, s.network.Teardown(ctx, networkPod(rec)))
	}
	errs = append(errs, s.sandboxes.Destroy(sb))
	return errors.Join(errs...)
}
