package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/enroot-cri/enroot-cri/internal/logging"
)

// recover loads every pod and container record, brings their states up to date (a
// container that exited while the daemon was down shows its exit code; after a reboot
// every container is exited and every pod not ready), restores the image mount counts
// and removes what half-finished operations left.
func (s *Server) recover() error {
	ctx := logging.With(context.Background(), s.log.With("phase", "recover"))
	if err := s.recs.load(); err != nil {
		return err
	}
	for _, p := range s.recs.allPods() {
		alive := s.sandboxes.Alive(&p.Sandbox)
		if p.State == podReady && !alive {
			updated := *p
			updated.State = podNotReady
			if err := s.recs.savePod(&updated); err != nil {
				return err
			}
		}
	}
	inUse := map[string]int{}
	for _, c := range s.recs.allContainers() {
		if now := s.sync(ctx, c.ID); c.State != containerExited && now != nil && now.State != containerExited {
			if s.engine.State(c.ID).ShimAlive {
				s.metrics.Monitor("readopted") // sync reported the lost ones
			}
			s.watch(ctx, c.ID)
		}
		inUse[c.ImageID]++
		for _, v := range c.ImageVolumes {
			inUse[v]++
		}
	}
	if err := s.mounts.Recover(inUse); err != nil {
		return err
	}
	dropped, err := s.ledger.Reconcile(func(id string) bool { _, err := s.recs.container(id); return err == nil })
	if err != nil {
		return err
	}
	if len(dropped) > 0 {
		logging.From(ctx).Info("released GPU claims of containers that no longer exist", "gpus", dropped)
	}
	return s.removeDebris(ctx)
}

// removeDebris removes bundles, writable layers and pod directories that no record
// owns: what a create interrupted by a crash left.
func (s *Server) removeDebris(ctx context.Context) error {
	var errs []error
	bundles, err := s.engine.Bundles()
	if err != nil {
		return err
	}
	for _, id := range bundles {
		if _, err := s.recs.container(id); err != nil {
			logging.From(ctx).Info("removing leftover container", "container_id", id)
			errs = append(errs, s.engine.Delete(id))
		}
	}
	logs, err := s.engine.MonitorLogs()
	errs = append(errs, err)
	for _, id := range logs {
		if _, err := s.recs.container(id); err != nil {
			errs = append(errs, s.engine.Forget(id))
		}
	}
	errs = append(errs, s.removePending(ctx))
	podDirs, err := os.ReadDir(filepath.Join(s.cfg.State, "pods"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("list pod directories: %w", err)
	}
	for _, e := range podDirs {
		if _, err := s.recs.pod(e.Name()); err != nil {
			logging.From(ctx).Info("removing leftover pod sandbox", "pod_id", e.Name())
			errs = append(errs, s.sandboxes.Destroy(s.sandboxes.Leftover(s.podDir(e.Name()))))
		}
	}
	return errors.Join(errs...)
}
