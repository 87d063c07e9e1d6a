package config

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/enroot-cri/enroot-cri/errdefs"
)

func TestDefaultTOMLMatchesDefault(t *testing.T) {
	cfg, err := Parse(DefaultTOML, "default")
	require.NoError(t, err)
	assert.Equal(t, Default(), cfg)
}

func TestParseOverrides(t *testing.T) {
	cfg, err := Parse(`
log_level = "debug"
[images]
max_concurrent_downloads = 3
[registries."registry.k8s.io"]
mirrors = ["http://127.0.0.1:5000"]
insecure = true
[cgroups]
driver = "systemd"
[runtimes.gpu]
`, "x.toml")
	require.NoError(t, err)
	assert.Equal(t, "debug", cfg.LogLevel)
	assert.Equal(t, 3, cfg.Images.MaxConcurrentDownloads)
	assert.Equal(t, RegistryHost{Mirrors: []string{"http://127.0.0.1:5000"}, Insecure: true}, cfg.Registries["registry.k8s.io"])
	assert.Equal(t, "systemd", cfg.Cgroups.Driver)
	assert.Equal(t, []string{"enroot", "gpu", "kubernetes"}, cfg.RuntimeHandlers(), "handler tables add to the built-in ones")
	assert.Equal(t, "/var/lib/enroot-cri", cfg.Root, "keys absent from the file keep their defaults")
}

func TestParseRejects(t *testing.T) {
	tests := []struct {
		name, text string
		wantIn     []string
	}{
		{"unknown top key", `sockett = "/x"`, []string{"x.toml", `"sockett"`}},
		{"unknown nested key", "[images]\nsquash = 1", []string{`"images.squash"`}},
		{"wrong type", `log_level = 3`, []string{"x.toml", "log_level"}},
		{"bad level", `log_level = "loud"`, []string{"log_level", "debug | info | warn | error"}},
		{"relative root", `root = "var/lib"`, []string{"root", "absolute path"}},
		{"zero downloads", "[images]\nmax_concurrent_downloads = 0", []string{"images.max_concurrent_downloads", "1 to 1000"}},
		{"bad driver", "[cgroups]\ndriver = \"cgroupv3\"", []string{"cgroups.driver", "cgroupfs | systemd"}},
		{"bad mirror", "[registries.\"docker.io\"]\nmirrors = [\"ftp://x\"]", []string{`registries."docker.io".mirrors[0]`}},
		{"mirror with path", "[registries.\"docker.io\"]\nmirrors = [\"http://x/v2/foo\"]", []string{"no path"}},
		{"public streaming", "[streaming]\naddress = \"0.0.0.0:10010\"", []string{"streaming.address", "loopback"}},
		{"unknown default runtime", `default_runtime = "kata"`, []string{"default_runtime", "enroot, kubernetes"}},
		{"bad kind", "[runtimes.x]\nkind = \"kata\"", []string{"runtimes.x.kind", "kubernetes | enroot"}},
		{"privileged enroot", "[runtimes.e]\nkind = \"enroot\"\nallow_privileged = true", []string{"runtimes.e.allow_privileged", "never"}},
		{"root remapped to root", "[runtimes.enroot]\nremap_root_uid = 0", []string{"runtimes.enroot.remap_root_uid", "not 0"}},
		{"enroot key on kubernetes", "[runtimes.k]\nremap_root = true", []string{"runtimes.k.remap_root", "kind enroot only"}},
		{"bad duration", "[images]\npull_timeout = \"soon\"", []string{"pull_timeout", "not a duration"}},
		{"negative bound", "[images]\nmax_entries = -1", []string{"images.max_entries", "negative"}},
		{"relative image socket", "[images]\nsocket = \"images.sock\"", []string{"images.socket", "absolute path"}},
		{"relative shared dir", "[images.shared]\n\"sqsh.site\" = \"shared\"", []string{`images.shared."sqsh.site"`, "absolute path"}},
		{"shared dir as Docker Hub", "[images.shared]\n\"docker.io\" = \"/shared\"", []string{`images.shared."docker.io"`, "HOST[:PORT]"}},
		{"shared registry with a path", "[images.shared]\n\"sqsh.site/x\" = \"/shared\"", []string{`images.shared."sqsh.site/x"`, "HOST[:PORT]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.text, "x.toml")
			require.Error(t, err)
			assert.True(t, errors.Is(err, errdefs.ErrInvalidArgument), "error kind: %v", err)
			for _, s := range tt.wantIn {
				assert.Contains(t, err.Error(), s)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "none.toml")
	cfg, err := Load(missing, false)
	require.NoError(t, err)
	assert.Equal(t, Default(), cfg)

	_, err = Load(missing, true)
	require.Error(t, err, "an explicitly named file must exist")
	assert.ErrorIs(t, err, os.ErrNotExist)
}

// A table gets the defaults of its kind for every key it leaves out.
func TestRuntimeTableDefaults(t *testing.T) {
	tests := []struct {
		name, text, handler string
		want                Runtime
	}{
		{"named enroot without kind", "[runtimes.enroot]\nremap_root = true", "enroot",
			Runtime{Kind: KindEnroot, DefaultSeccomp: "unconfined", RemapRoot: true, RemapRootUID: 65534, RemapRootGID: 65534, MinUID: 1000}},
		{"other name without kind", "[runtimes.gpu]\n", "gpu", RuntimeDefaults(KindKubernetes)},
		{"enroot kind", "[runtimes.slurm]\nkind = \"enroot\"\nmin_uid = 500", "slurm",
			Runtime{Kind: KindEnroot, DefaultSeccomp: "unconfined", RemapRootUID: 65534, RemapRootGID: 65534, MinUID: 500}},
		{"kubernetes without privileged", "[runtimes.locked]\nallow_privileged = false", "locked",
			Runtime{Kind: KindKubernetes, DefaultSeccomp: "unconfined"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse(tt.text, "x.toml")
			require.NoError(t, err)
			assert.Equal(t, tt.want, cfg.Runtimes[tt.handler])
		})
	}
	cfg, err := Parse("", "x.toml")
	require.NoError(t, err)
	assert.Equal(t, KindKubernetes, cfg.DefaultRuntime, "pods naming no handler get Kubernetes semantics")
	assert.True(t, cfg.Runtimes[cfg.DefaultRuntime].AllowPrivileged, "system pods may be privileged on the defaults")
}

func TestKeysAreTheFilesNames(t *testing.T) {
	keys, err := Default().Keys()
	require.NoError(t, err)
	assert.Equal(t, "/run/enroot-cri/enroot-cri.sock", keys["socket"])
	cg, ok := keys["cgroups"].(map[string]any)
	require.True(t, ok, "tables stay tables: %v", keys)
	assert.Equal(t, "cgroupfs", cg["driver"])
	assert.NotContains(t, keys, "Socket", "Go field names")
}
