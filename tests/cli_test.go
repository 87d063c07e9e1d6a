package tests

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestConfigCommandPrintsWhatServeAccepts(t *testing.T) {
	out, code := runCLI(t, "config")
	require.Equal(t, 0, code)
	assert.Contains(t, out, `socket = "/run/enroot-cri/enroot-cri.sock"`)
	assert.Contains(t, out, "[runtimes.enroot]")

	d := newDaemon(t, "")
	// The printed defaults with only the paths moved to the scratch dir.
	cfg := out + "\n"
	for _, kv := range [][2]string{
		{`socket = "/run/enroot-cri/enroot-cri.sock"`, `socket = "` + d.socket + `"`},
		{`root = "/var/lib/enroot-cri"`, `root = "` + filepath.Join(d.dir, "root") + `"`},
		{`state = "/run/enroot-cri"`, `state = "` + filepath.Join(d.dir, "state") + `"`},
	} {
		require.Contains(t, cfg, kv[0])
		cfg = strings.Replace(cfg, kv[0], kv[1], 1)
	}
	require.NoError(t, os.WriteFile(d.config, []byte(cfg), 0o644))
	d.start(t)
	require.NoError(t, d.stop(t))
}

func TestVersionCommand(t *testing.T) {
	out, code := runCLI(t, "version")
	require.Equal(t, 0, code)
	assert.Regexp(t, `^enroot-cri \d+\.\d+\.\d+(-\S+)? \(CRI v1, go[\d.]+\)\n$`, out, "a semantic version, which the kubelet parses")
}

func TestServeRejectsBadConfiguration(t *testing.T) {
	tests := []struct{ name, text, want string }{
		{"unknown key", "sockett = \"/x\"\n", `unknown configuration key "sockett"`},
		{"wrong type", "[images]\nmax_concurrent_downloads = \"ten\"\n", "max_concurrent_downloads"},
		{"impossible value", "log_level = \"verbose\"\n", "allowed: debug | info | warn | error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bad.toml")
			require.NoError(t, os.WriteFile(path, []byte(tt.text), 0o644))
			out, code := runCLI(t, "serve", "--config", path)
			assert.Equal(t, 1, code)
			assert.Contains(t, out, path, "the message names the file")
			assert.Contains(t, out, tt.want)
		})
	}
	out, code := runCLI(t, "serve", "--config", filepath.Join(t.TempDir(), "absent.toml"))
	assert.Equal(t, 1, code)
	assert.Contains(t, out, "no such file")
}

func TestSocketLifecycle(t *testing.T) {
	d := newDaemon(t, "")
	// A stale socket from a crashed daemon is replaced.
	stale, err := net.Listen("unix", d.socket)
	require.NoError(t, err)
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()

	d.start(t)
	st, err := os.Stat(d.socket)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o660), st.Mode().Perm())

	out, code := runCLI(t, "serve", "--config", d.config)
	assert.Equal(t, 1, code, "a second daemon on the same socket must not start")
	assert.Contains(t, out, "is serving on "+d.socket)

	require.NoError(t, d.stop(t), "SIGTERM is a clean exit:\n%s", d.log)
	assert.NoFileExists(t, d.socket, "the socket is removed on stop")
	assert.Contains(t, d.log.String(), "enroot-cri stopped")
}

func TestDoctor(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the node checks need root")
	}
	d := newDaemon(t, "[cni]\nconf_dir = \""+filepath.Join(t.TempDir(), "cni")+"\"\nbin_dirs = [\"/usr/lib/cni\"]\n")
	doctor := func() (string, int) {
		cmd := exec.Command(enrootCRI, "doctor", "--config", d.config)
		out, _ := cmd.CombinedOutput()
		return string(out), cmd.ProcessState.ExitCode()
	}
	out, code := doctor()
	assert.Equal(t, 1, code, out)
	assert.Regexp(t, `FAIL\s+cni\s+no CNI network configuration`, out)
	assert.Contains(t, out, "fix: install containernetworking-plugins and copy /usr/share/enroot-cri/10-enroot-cri.conflist")
	assert.Regexp(t, `ok\s+cgroups\s+cgroup v`, out)
	assert.Regexp(t, `ok\s+tools: mksquashfs`, out)
	assert.Regexp(t, `ok\s+tools: enroot-cri-shim\s+containers are monitored by `+regexp.QuoteMeta(filepath.Join(filepath.Dir(enrootCRI), "enroot-cri-shim")), out)

	var cfg string
	for _, l := range lines(func() string { b, _ := os.ReadFile(d.config); return string(b) }()) {
		if strings.HasPrefix(l, "conf_dir") {
			cfg = strings.Trim(strings.TrimSpace(strings.TrimPrefix(l, "conf_dir =")), `"`)
		}
	}
	require.NoError(t, os.MkdirAll(cfg, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(cfg, "10-x.conflist"), []byte(`{"cniVersion":"1.0.0","name":"x","plugins":[{"type":"bridge"},{"type":"no-such-plugin"}]}`), 0o644))
	out, code = doctor()
	assert.Equal(t, 1, code, out)
	assert.Contains(t, out, `CNI plugin "no-such-plugin" of network "x" is in none of /usr/lib/cni`)

	require.NoError(t, os.WriteFile(filepath.Join(cfg, "10-x.conflist"), []byte(`{"cniVersion":"1.0.0","name":"x","plugins":[{"type":"bridge"}]}`), 0o644))
	require.NoError(t, os.MkdirAll(filepath.Dir(d.slurmConf()), 0o755))
	require.NoError(t, os.WriteFile(d.slurmConf(), []byte("ConstrainRAMSpace=maybe\n"), 0o644))
	out, code = doctor()
	assert.Equal(t, 1, code, out)
	assert.Regexp(t, `FAIL\s+slurm cgroup.conf\s+.*cgroup.conf:1: ConstrainRAMSpace: "maybe" is not yes or no`, out)

	require.NoError(t, os.WriteFile(d.slurmConf(), []byte("ConstrainRAMSpace=yes\n"), 0o644))
	out, code = doctor()
	assert.Equal(t, 0, code, "warnings (no GPUs, no kubelet here) do not fail the node:\n%s", out)
	assert.Regexp(t, `ok\s+cni\s+network "x" \(bridge\)`, out)
	assert.Regexp(t, `warn\s+gpus\s+no GPUs`, out)
}
