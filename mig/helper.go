package mig

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"time"
)

// ReadInventory runs the enroot-cri-nvml helper and reads its inventory. A missing
// helper or a failing one gives an empty inventory that says why.
func ReadInventory(ctx context.Context, helper string) Inventory {
	if _, err := os.Stat(helper); errors.Is(err, os.ErrNotExist) {
		return Inventory{GPUs: []GPU{}, Unavailable: fmt.Sprintf("the NVML helper %s is not installed", helper)}
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, helper)
	out, err := cmd.Output()
	if err != nil {
		msg := err.Error()
		var ee *exec.ExitError
		if errors.As(err, &ee) && len(ee.Stderr) > 0 {
			msg = string(ee.Stderr)
		}
		return Inventory{GPUs: []GPU{}, Unavailable: fmt.Sprintf("%s failed: %s", helper, msg)}
	}
	var inv Inventory
	if err := json.Unmarshal(out, &inv); err != nil {
		return Inventory{GPUs: []GPU{}, Unavailable: fmt.Sprintf("%s printed no inventory: %v", helper, err)}
	}
	return inv
}
