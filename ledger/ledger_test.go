package ledger

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLedger(t *testing.T) {
	l := &Ledger{Path: filepath.Join(t.TempDir(), "ledger.json")}
	job := Holder{Kind: HolderSlurm, ID: "42", Since: time.Now()}
	pod := Holder{Kind: HolderPod, ID: "c0ffee0123456789", Name: "ns/pod/c", Since: time.Now()}
	require.NoError(t, l.Claim([]string{"MIG-0001"}, job))
	require.NoError(t, l.Claim([]string{"MIG-0001"}, job), "claiming again is not an error")
	err := l.Claim([]string{"MIG-0002", "MIG-0001"}, pod)
	var held *HeldError
	require.ErrorAs(t, err, &held)
	assert.Contains(t, err.Error(), "GPU MIG-0001 is held by Slurm job 42")
	c, err := l.Read()
	require.NoError(t, err)
	assert.NotContains(t, c.Devices, "MIG-0002", "a refused claim takes nothing")

	got, err := l.Allocate([]string{"MIG-0001", "MIG-0002", "MIG-0003"}, 1, pod)
	require.NoError(t, err)
	assert.Equal(t, []string{"MIG-0002"}, got, "allocation skips held slices")
	_, err = l.Allocate([]string{"MIG-0001", "MIG-0002"}, 1, Holder{Kind: HolderPod, ID: "other"})
	assert.ErrorContains(t, err, "0 of 1 matching GPUs are free")

	require.NoError(t, l.ClaimCPUs(job, []int{2, 3}))
	c, err = l.Read()
	require.NoError(t, err)
	assert.Equal(t, map[int]string{2: "42", 3: "42"}, c.SlurmCPUs())

	freed, err := l.Release(HolderSlurm, "42")
	require.NoError(t, err)
	assert.Equal(t, []string{"MIG-0001"}, freed)
	dropped, err := l.Reconcile(func(id string) bool { return false })
	require.NoError(t, err)
	assert.Equal(t, []string{"MIG-0002"}, dropped)
	c, err = (&Ledger{Path: l.Path}).Read()
	require.NoError(t, err)
	assert.Empty(t, c.Devices)
	assert.Empty(t, c.CPUs)
}

// Two processes claiming one slice at once: exactly one gets it. The claimants are
// this test binary run again (TestLedgerClaimant).
func TestLedgerConcurrentProcesses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.json")
	var wg sync.WaitGroup
	results := make([]error, 8)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(os.Args[0], "-test.run=^TestLedgerClaimant$")
			cmd.Env = append(os.Environ(), "LEDGER_CLAIMANT="+path, fmt.Sprintf("LEDGER_ID=%d", i))
			out, err := cmd.CombinedOutput()
			if err != nil {
				results[i] = errors.New(string(out))
			}
		}()
	}
	wg.Wait()
	won := 0
	for _, err := range results {
		if err == nil {
			won++
		} else {
			assert.Contains(t, err.Error(), "is held by container")
		}
	}
	assert.Equal(t, 1, won, "exactly one process claims the slice")
}

func TestLedgerClaimant(t *testing.T) {
	path := os.Getenv("LEDGER_CLAIMANT")
	if path == "" {
		t.Skip("run by TestLedgerConcurrentProcesses")
	}
	l := &Ledger{Path: path}
	if err := l.Claim([]string{"MIG-0001"}, Holder{Kind: HolderPod, ID: os.Getenv("LEDGER_ID")}); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
}
