package tests

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// writeFiles writes name -> content (mode 0755 for .sh) under dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, ".sh") {
			mode = 0o755
		}
		require.NoError(t, os.WriteFile(p, []byte(content), mode))
	}
}

// siteDir is a directory for an Enroot configuration or data that a container's user
// namespace may read, as /etc/enroot is (t.TempDir's parent is root's only).
func siteDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "enroot-site-")
	require.NoError(t, err)
	require.NoError(t, os.Chmod(dir, 0o755))
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func TestEnrootConfigurationAndHooks(t *testing.T) {
	site, failing, data := siteDir(t), siteDir(t), siteDir(t)
	writeFiles(t, data, map[string]string{"shared.txt": "site data\n", "hooked.txt": "from a hook mount\n"})
	writeFiles(t, site, map[string]string{
		"enroot.conf":              "ENROOT_SITE_NAME testsite\nENROOT_ROOTFS_WRITABLE yes\n",
		"environ.d/10-site.env":    "SITE_ENV=from-environ-d\nOVERRIDDEN=by-environ-d\n",
		"mounts.d/10-system.fstab": "/proc /proc none x-create=dir,bind,rprivate 0 -1\n", // Enroot's own: the runtime manages /proc
		"mounts.d/50-data.fstab":   data + " /site-data none x-create=dir,bind,ro 0 -1\n",
		"hooks.d/10-env.sh": fmt.Sprintf(`#!/bin/sh
set -e
echo "HOOK_ENV=from-hook-$ENROOT_SITE_NAME-$(grep -c . "$ENROOT_ENVIRON")" >> "$ENROOT_ENVIRON"
echo "HOOK_PID=$ENROOT_PID" >> "$ENROOT_ENVIRON"
echo "HOOK_USER=$(id -u):$(awk '{print $2}' /proc/self/uid_map)" >> "$ENROOT_ENVIRON"
echo "%s/hooked.txt /hooked.txt none x-create=file,bind,ro" >> "$ENROOT_MOUNTS"
echo 'export RC_LOCAL=sourced' > "$ENROOT_ROOTFS/etc/rc.local"
test -d "$ENROOT_ROOTFS/bin"
test -f "$ENROOT_ROOTFS/site-data/shared.txt" # mounts.d of pass -1 come before the hooks
`, data),
		"hooks.d/20-disabled.sh.off": "#!/bin/sh\nexit 1\n",
	})
	writeFiles(t, failing, map[string]string{"hooks.d/50-broken.sh": "#!/bin/sh\necho 'nvidia-container-cli: no GPU here' >&2\nexit 3\n"})

	e := newPodEnvWith(t, fmt.Sprintf("[runtimes.enroot]\nenroot_config_dir = %q\n[runtimes.failing]\nkind = \"enroot\"\nenroot_config_dir = %q\n"+
		"[runtimes.nohooks]\nkind = \"enroot\"\nenroot_config_dir = %q\ndisable_hooks = true\n", site, failing, site))
	cfg := e.podConfig("enroot", nil)
	pod := e.runPodWith(t, cfg, "enroot")
	id := e.create(t, pod, cfg, &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "c"}, Image: &runtimeapi.ImageSpec{Image: e.image},
		Command: []string{"/bin/sh", "-c", `echo SITE_ENV=$SITE_ENV; echo HOOK_ENV=$HOOK_ENV; echo OVERRIDDEN=$OVERRIDDEN; echo RC_LOCAL=$RC_LOCAL; echo HOOK_PID=$HOOK_PID; echo HOOK_USER=$HOOK_USER; cat /site-data/shared.txt /hooked.txt; ls /proc | grep -c '^[0-9]'; exec sleep 1000`},
		Envs:    []*runtimeapi.KeyValue{{Key: "OVERRIDDEN", Value: []byte("by-cri")}},
		LogPath: "c.log",
	})
	_, err := e.runtime.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: id})
	require.NoError(t, err)
	var log string
	poll(t, func() bool { log = e.logText(t, id); return strings.Contains(log, "from a hook mount") }, 13*time.Second, 50*time.Millisecond)
	for _, want := range []string{"SITE_ENV=from-environ-d", "HOOK_ENV=from-hook-testsite-", "OVERRIDDEN=by-cri",
		"RC_LOCAL=sourced", "site data"} {
		assert.Contains(t, log, want)
	}
	assert.Regexp(t, `HOOK_PID=\d+\n`, log, "hooks get ENROOT_PID")
	assert.Contains(t, log, "HOOK_USER=0:65534", "a root pod's hooks run as root of its user namespace, host user nobody")

	resp, err := e.runtime.ExecSync(context.Background(), &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"/bin/sh", "-c", "echo $HOOK_ENV"}})
	require.NoError(t, err)
	assert.Contains(t, string(resp.Stdout), "from-hook-testsite", "exec gets the environment the hooks made (%s)", resp.Stderr)

	// A failing hook fails the create with its name and output, and leaves nothing.
	fcfg := e.podConfig("failing", nil)
	fpod := e.runPodWith(t, fcfg, "failing")
	_, err = e.runtime.CreateContainer(context.Background(), &runtimeapi.CreateContainerRequest{PodSandboxId: fpod,
		SandboxConfig: fcfg, Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "c"},
			Image: &runtimeapi.ImageSpec{Image: e.image}, Command: []string{"true"}}})
	require.Error(t, err)
	assert.Equal(t, codes.FailedPrecondition, status.Code(err))
	assert.ErrorContains(t, err, "enroot hook 50-broken.sh failed")
	assert.ErrorContains(t, err, "nvidia-container-cli: no GPU here")
	list, err := e.runtime.ListContainers(context.Background(), &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: fpod}})
	require.NoError(t, err)
	assert.Empty(t, list.Containers)

	// A handler can turn the hooks off.
	ncfg := e.podConfig("nohooks", nil)
	npod := e.runPodWith(t, ncfg, "nohooks")
	out, _ := e.runWith(t, npod, ncfg, "plain", nil, `echo "HOOK_ENV=[$HOOK_ENV] SITE_ENV=$SITE_ENV"`)
	assert.Equal(t, "HOOK_ENV=[] SITE_ENV=from-environ-d", out)

	// The default handler (kind kubernetes) applies no Enroot configuration.
	kcfg := e.podConfig("kubernetes", nil)
	kpod := e.runPod(t, kcfg)
	out, _ = e.runWith(t, kpod, kcfg, "plain", nil, `echo "SITE_ENV=[$SITE_ENV]"; test -e /site-data && echo site-data`)
	assert.Equal(t, "SITE_ENV=[]", out)
}
