package server

import (
	"context"
	"errors"

	"github.com/enroot-cri/enroot-cri/internal/logging"
)

// undo is a stack of steps that reverse a multi-step create. When the create fails,
// run unwinds them in reverse order so that nothing half-made remains.
type undo []func() error

func (u *undo) push(step func() error) { *u = append(*u, step) }

// run unwinds the stack if *err is set; failures of undo steps are logged.
func (u *undo) run(ctx context.Context, err *error) {
	if *err == nil {
		return
	}
	var errs []error
	for i := len(*u) - 1; i >= 0; i-- {
		if uerr := (*u)[i](); uerr != nil {
			errs = append(errs, uerr)
		}
	}
	if len(errs) > 0 {
		logging.From(ctx).Error("cleanup after a failed create was incomplete", "error", errors.Join(errs...))
	}
}
