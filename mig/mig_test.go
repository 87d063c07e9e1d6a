package mig

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// machine is two GPUs: GPU 0 (minor 0) in MIG mode with two slices, GPU 1 whole.
func machine() Inventory {
	return Inventory{GPUs: []GPU{
		{Index: 0, UUID: "GPU-aaaa", Minor: 0, MIGCurrent: true, Slices: []Slice{
			{UUID: "MIG-0001", Profile: "1g.10gb", GPU: 0, GI: 7, CI: 0},
			{UUID: "MIG-0002", Profile: "3g.40gb", GPU: 0, GI: 2, CI: 0},
		}},
		{Index: 1, UUID: "GPU-bbbb", Minor: 1},
	}}
}

func TestParseCapMinors(t *testing.T) {
	m, err := ParseCapMinors(strings.NewReader("config 1\nmonitor 2\ngpu0/gi7/access 66\ngpu0/gi7/ci0/access 67\n\n"))
	require.NoError(t, err)
	gi, ci, err := m.Slice(0, 7, 0)
	require.NoError(t, err)
	assert.Equal(t, []int{66, 67}, []int{gi, ci})
	_, _, err = m.Slice(0, 2, 0)
	assert.ErrorContains(t, err, "mig-minors has no gpu0/gi2/access")
	for _, bad := range []string{"gpu0/gi7/access", "gpu0/gi7/access x", "a 1 2"} {
		_, err := ParseCapMinors(strings.NewReader(bad))
		assert.Error(t, err, bad)
	}
}

func TestLookup(t *testing.T) {
	inv := machine()
	uuids := func(names ...string) ([]string, error) {
		devs, err := inv.Lookup(names)
		var out []string
		for _, d := range devs {
			out = append(out, d.UUID)
		}
		return out, err
	}
	got, err := uuids("all")
	require.NoError(t, err)
	assert.Equal(t, []string{"MIG-0001", "MIG-0002", "GPU-bbbb"}, got)
	got, err = uuids("0:1", "1", "MIG-0001", "MIG-0001")
	require.NoError(t, err)
	assert.Equal(t, []string{"MIG-0002", "GPU-bbbb", "MIG-0001"}, got)
	got, err = uuids("none", "void", "")
	require.NoError(t, err)
	assert.Empty(t, got)
	for name, want := range map[string]string{
		"0":        "is in MIG mode",
		"0:5":      "GPU 0 has 2 MIG slices",
		"3":        "no GPU with index 3",
		"MIG-9999": "no such GPU or MIG device",
		"gpu0":     "not all, none, an index",
	} {
		_, err := uuids(name)
		assert.ErrorContains(t, err, want, name)
	}
}

// fakeDev makes a /dev tree with real character device nodes (NVIDIA's major 195 for
// the GPUs, a made-up one for the capabilities) and a mig-minors file.
func fakeDev(t *testing.T) Host {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mknod needs root")
	}
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "dev", "nvidia-caps"), 0o755))
	nodes := map[string][2]uint32{"nvidia0": {195, 0}, "nvidia1": {195, 1}, "nvidiactl": {195, 255},
		"nvidia-uvm": {235, 0}, "nvidia-caps/nvidia-cap66": {236, 66}, "nvidia-caps/nvidia-cap67": {236, 67},
		"nvidia-caps/nvidia-cap21": {236, 21}, "nvidia-caps/nvidia-cap22": {236, 22}}
	for name, mm := range nodes {
		require.NoError(t, unix.Mknod(filepath.Join(dir, "dev", name), unix.S_IFCHR|0o666, int(unix.Mkdev(mm[0], mm[1]))))
	}
	minors := "gpu0/gi7/access 66\ngpu0/gi7/ci0/access 67\ngpu0/gi2/access 21\ngpu0/gi2/ci0/access 22\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "mig-minors"), []byte(minors), 0o444))
	return Host{DevRoot: filepath.Join(dir, "dev"), CapMinors: filepath.Join(dir, "mig-minors")}
}

func TestBindSlice(t *testing.T) {
	host := fakeDev(t)
	devs, err := machine().Lookup([]string{"MIG-0001"})
	require.NoError(t, err)
	b, err := Bind(devs, host)
	require.NoError(t, err)
	var paths []string
	for _, n := range b.Nodes {
		paths = append(paths, fmt.Sprintf("%s %d:%d", n.Path, n.Major, n.Minor))
	}
	assert.Equal(t, []string{"/dev/nvidia0 195:0", "/dev/nvidia-caps/nvidia-cap66 236:66", "/dev/nvidia-caps/nvidia-cap67 236:67",
		"/dev/nvidiactl 195:255", "/dev/nvidia-uvm 235:0"}, paths, "the parent, the slice's GI and CI capabilities, the control nodes; no other slice's")
	assert.Equal(t, []string{"NVIDIA_VISIBLE_DEVICES=MIG-0001", "CUDA_VISIBLE_DEVICES=MIG-0001"}, b.Env)

	devs, err = machine().Lookup([]string{"MIG-0002", "1"})
	require.NoError(t, err)
	b, err = Bind(devs, host)
	require.NoError(t, err)
	assert.Equal(t, []string{"NVIDIA_VISIBLE_DEVICES=MIG-0002,GPU-bbbb", "CUDA_VISIBLE_DEVICES=MIG-0002,GPU-bbbb"}, b.Env)
	assert.Len(t, b.Nodes, 6)

	require.NoError(t, os.Remove(filepath.Join(host.DevRoot, "nvidia-caps", "nvidia-cap22")))
	devs, _ = machine().Lookup([]string{"MIG-0002"})
	_, err = Bind(devs, host)
	assert.ErrorContains(t, err, "nvidia-cap22")
}

func TestScontrolCPUs(t *testing.T) {
	out := `JobId=7 JobName=sh
   NumNodes=2 NumCPUs=6
     Nodes=n1 CPU_IDs=0-1,4 Mem=64 GRES=gpu:1(IDX:0)
     Nodes=n2 CPU_IDs=2 Mem=64 GRES=
   MinCPUsNode=1`
	cpus, err := ScontrolCPUs(out, "n1")
	require.NoError(t, err)
	assert.Equal(t, []int{0, 1, 4}, cpus)
	cpus, err = ScontrolCPUs(out, "n2")
	require.NoError(t, err)
	assert.Equal(t, []int{2}, cpus)
	cpus, err = ScontrolCPUs(out, "n3")
	require.NoError(t, err)
	assert.Empty(t, cpus)
}
