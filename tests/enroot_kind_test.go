package tests

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/internal/testregistry"
)

// hostUser makes a user account on this machine for the test (an Enroot handler runs
// pods as node users, as Slurm runs jobs) and removes it afterwards; an account that
// exists already is used as it is.
func hostUser(t *testing.T, name string, uid int) {
	t.Helper()
	needTools(t, "useradd", "userdel")
	if exec.Command("getent", "passwd", strconv.Itoa(uid)).Run() == nil {
		return
	}
	out, err := exec.Command("useradd", "--uid", strconv.Itoa(uid), "--user-group", "--create-home",
		"--shell", "/bin/sh", name).CombinedOutput()
	require.NoError(t, err, "useradd: %s", out)
	t.Cleanup(func() { _ = exec.Command("userdel", "--remove", name).Run() })
}

const testUID = 5001

// identityScript prints what a Slurm step's task is measured by (../shared/ENROOT.md).
const identityScript = `cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups; echo id=$(id -u):$(id -g)
grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status | tr -s '\t' ' '
echo "HOME=$HOME USER=$USER LOGNAME=$LOGNAME SHELL=$SHELL"
touch /rootfile 2>&1; echo x > /dev/shm/f.$(id -u) && chown 1234:1234 /dev/shm/f.$(id -u); echo chown=$? owner=$(stat -c %u:%g /dev/shm/f.$(id -u))
echo cgroup=$(cut -d: -f3 /proc/self/cgroup | sort -u | tr '\n' ' '); ls /sys/fs/cgroup | tr '\n' ' '; echo`

// A handler of kind enroot runs a pod as `enroot start` runs a job step of the same
// user under pyxis.
func TestEnrootHandlerRunsPodsAsEnrootDoes(t *testing.T) {
	hostUser(t, "ecri-test", testUID)
	e := newPodEnvWith(t, "[runtimes.remap]\nkind = \"enroot\"\nremap_root = true\n")
	cfg := e.podConfig("enroot-user", nil)
	pod := e.runPodWith(t, cfg, "enroot")
	asUser := &runtimeapi.LinuxContainerSecurityContext{RunAsUser: &runtimeapi.Int64Value{Value: testUID}}
	out, code := e.runWith(t, pod, cfg, "user", asUser, identityScript)
	require.Equal(t, int32(0), code, out)
	uid := strconv.Itoa(testUID)
	assert.Regexp(t, `(?m)^\s*`+uid+`\s+`+uid+`\s+1\n\s*`+uid+`\s+`+uid+`\s+1\ndeny$`, out, "Enroot's mapping of the user only, setgroups denied")
	assert.Contains(t, out, "id="+uid+":"+uid)
	assert.Contains(t, out, "CapEff: 0000000000000000", "a non-root user has no capabilities")
	assert.Contains(t, out, "CapBnd: 0000000000000000", "and an empty bounding set")
	assert.Contains(t, out, "NoNewPrivs: 1")
	assert.Contains(t, out, "Seccomp: 2", "Enroot's seccomp filter")
	assert.Contains(t, out, "HOME=/home/ecri-test USER=ecri-test LOGNAME=ecri-test SHELL=/bin/sh", "the user's identity from the host")
	assert.Contains(t, out, "touch: /rootfile: Read-only file system", "the root is read-only unless ENROOT_ROOTFS_WRITABLE")
	assert.Contains(t, out, "chown=0 owner="+uid+":"+uid, "chown succeeds without effect")
	assert.Contains(t, out, "cgroup=/\n", "a cgroup namespace rooted at the container's cgroup")
	assert.Contains(t, out, "memory", "/sys/fs/cgroup shows the container's cgroup")

	// An exec has the same identity and privileges.
	id := e.create(t, pod, cfg, &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "sleeper"},
		Image: &runtimeapi.ImageSpec{Image: e.image}, Command: []string{"sleep", "1000"},
		Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: asUser}})
	_, err := e.runtime.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: id})
	require.NoError(t, err)
	resp, err := e.runtime.ExecSync(context.Background(), &runtimeapi.ExecSyncRequest{ContainerId: id,
		Cmd: []string{"/bin/sh", "-c", `echo id=$(id -u):$(id -g); grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status | tr -s '\t' ' '`}})
	require.NoError(t, err)
	exe := string(resp.Stdout)
	for _, want := range []string{"id=" + uid + ":" + uid, "CapEff: 0000000000000000", "NoNewPrivs: 1", "Seccomp: 2"} {
		assert.Contains(t, exe, want, "exec (%s)", resp.Stderr)
	}

	// A pod running as root is root of its user namespace only: host user nobody.
	out, code = e.runWith(t, pod, cfg, "root", nil, identityScript)
	require.Equal(t, int32(0), code, out)
	assert.Regexp(t, `(?m)^\s*0\s+65534\s+1$`, out, "root is remapped to remap_root_uid")
	assert.Contains(t, out, "id=0:0")
	assert.NotContains(t, out, "CapEff: 0000000000000000", "root has the capabilities of its namespace")
	assert.Contains(t, out, "Seccomp: 2")
	assert.Contains(t, out, "chown=0 owner=0:0", "chown succeeds without effect")
	assert.Contains(t, out, "HOME=/root USER=root")

	// The image's volumes come from its /etc/fstab, as Enroot mounts them: writable
	// directories of a read-only root.
	entries, err := testregistry.BusyboxEntries()
	require.NoError(t, err)
	l, err := testregistry.Layer(entries, testregistry.Gzip, false)
	require.NoError(t, err)
	img, err := testregistry.Image(v1.Config{Env: []string{"PATH=/bin"}, Volumes: map[string]struct{}{"/data": {}}}, false, l)
	require.NoError(t, err)
	_, err = e.reg.Push("test/volume:1", img)
	require.NoError(t, err)
	_, err = e.images.PullImage(context.Background(), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: e.reg.Host + "/test/volume:1"}})
	require.NoError(t, err)
	vid := e.create(t, pod, cfg, &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "volume"},
		Image: &runtimeapi.ImageSpec{Image: e.reg.Host + "/test/volume:1"}, LogPath: "volume.log",
		Command: []string{"/bin/sh", "-c", `cat /etc/fstab; touch /data/x && echo data-writable; touch /x 2>&1`}})
	_, err = e.runtime.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: vid})
	require.NoError(t, err)
	e.waitExited(t, vid)
	vol := e.logText(t, vid)
	assert.Contains(t, vol, "${ENROOT_ROOTFS}/data /data none x-create=dir,bind,rw,nosuid,nodev")
	assert.Contains(t, vol, "data-writable")
	assert.Contains(t, vol, "Read-only file system")

	// ENROOT_REMAP_ROOT: root inside, the pod's user on the host.
	rcfg := e.podConfig("enroot-remap", nil)
	rpod := e.runPodWith(t, rcfg, "remap")
	out, code = e.runWith(t, rpod, rcfg, "remapped", asUser, identityScript)
	require.Equal(t, int32(0), code, out)
	assert.Regexp(t, `(?m)^\s*0\s+`+uid+`\s+1$`, out)
	assert.Contains(t, out, "id=0:0")
	assert.Contains(t, out, "LOGNAME=ecri-test", "the login name stays the user's")
}

// What an Enroot handler cannot give is refused with the field and the reason.
func TestEnrootHandlerRefusals(t *testing.T) {
	hostUser(t, "ecri-test", testUID)
	e := newPodEnv(t)
	cfg := e.podConfig("enroot-refusals", nil)
	pod := e.runPodWith(t, cfg, "enroot")
	user := func(uid int64) *runtimeapi.Int64Value { return &runtimeapi.Int64Value{Value: uid} }
	for name, tc := range map[string]struct {
		cfg  *runtimeapi.ContainerConfig
		want string
	}{
		"system account": {&runtimeapi.ContainerConfig{Linux: &runtimeapi.LinuxContainerConfig{
			SecurityContext: &runtimeapi.LinuxContainerSecurityContext{RunAsUser: user(33)}}}, "min_uid"},
		"no account": {&runtimeapi.ContainerConfig{Linux: &runtimeapi.LinuxContainerConfig{
			SecurityContext: &runtimeapi.LinuxContainerSecurityContext{RunAsUser: user(4242424)}}}, "has no account here"},
		"negative uid": {&runtimeapi.ContainerConfig{Linux: &runtimeapi.LinuxContainerConfig{
			SecurityContext: &runtimeapi.LinuxContainerSecurityContext{RunAsUser: user(-1)}}}, "run_as_user -1"},
		"enroot knob": {&runtimeapi.ContainerConfig{Envs: []*runtimeapi.KeyValue{{Key: "ENROOT_MOUNT_HOME", Value: []byte("y")}}},
			"ENROOT_* variables are the node's"},
		"added capability": {&runtimeapi.ContainerConfig{Linux: &runtimeapi.LinuxContainerConfig{
			SecurityContext: &runtimeapi.LinuxContainerSecurityContext{RunAsUser: user(testUID),
				Capabilities: &runtimeapi.Capability{AddCapabilities: []string{"NET_ADMIN"}}}}}, "has no capabilities"},
	} {
		c := tc.cfg
		c.Metadata, c.Image, c.Command = &runtimeapi.ContainerMetadata{Name: strings.ReplaceAll(name, " ", "-")},
			&runtimeapi.ImageSpec{Image: e.image}, []string{"true"}
		_, err := e.runtime.CreateContainer(context.Background(), &runtimeapi.CreateContainerRequest{PodSandboxId: pod, SandboxConfig: cfg, Config: c})
		assert.Equal(t, codes.InvalidArgument, status.Code(err), "%s: %v", name, err)
		assert.ErrorContains(t, err, tc.want, name)
	}
	_, err := e.runtime.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{RuntimeHandler: "kata",
		Config: e.podConfig("unknown-handler", nil)})
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
	assert.ErrorContains(t, err, `runtime_handler "kata" is not configured; configured handlers: enroot, kubernetes`)
}
