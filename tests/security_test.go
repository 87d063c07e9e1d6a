package tests

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// runWith runs a container with sc (as root unless sc names a user) that runs script,
// waits for it to end and returns its output and exit code.
func (e *podEnv) runWith(t *testing.T, pod string, podCfg *runtimeapi.PodSandboxConfig, name string,
	sc *runtimeapi.LinuxContainerSecurityContext, script string) (string, int32) {
	t.Helper()
	if sc == nil {
		sc = &runtimeapi.LinuxContainerSecurityContext{}
	}
	if sc.RunAsUser == nil {
		sc.RunAsUser = &runtimeapi.Int64Value{Value: 0}
	}
	id := e.create(t, pod, podCfg, &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name}, Image: &runtimeapi.ImageSpec{Image: e.image},
		Command: []string{"/bin/sh", "-c", script}, LogPath: name + ".log",
		Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: sc},
	})
	_, err := e.runtime.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: id})
	require.NoError(t, err)
	st := e.waitExited(t, id)
	return strings.Join(lines(e.crictl(t, "logs", id)), "\n"), st.ExitCode
}

const statusScript = `grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status | tr -s '\t' ' '; `

func TestCapabilitiesAndNoNewPrivs(t *testing.T) {
	e := newPodEnv(t)
	cfg := e.podConfig("caps", nil)
	pod := e.runPod(t, cfg)

	out, _ := e.runWith(t, pod, cfg, "default", nil, statusScript)
	assert.Contains(t, out, "CapEff: 00000000a80425fb", "containerd's default capability set")
	assert.Contains(t, out, "NoNewPrivs: 0")
	assert.Contains(t, out, "Seccomp: 0", "unconfined unless asked")

	out, _ = e.runWith(t, pod, cfg, "dropall", &runtimeapi.LinuxContainerSecurityContext{
		Capabilities: &runtimeapi.Capability{DropCapabilities: []string{"ALL"}, AddCapabilities: []string{"NET_ADMIN"}},
		NoNewPrivs:   true,
	}, statusScript+`chown 1 /tmp && echo chown-worked`)
	assert.Contains(t, out, "CapEff: 0000000000001000", "only NET_ADMIN")
	assert.Contains(t, out, "NoNewPrivs: 1")
	assert.NotContains(t, out, "chown-worked", "CAP_CHOWN was dropped")

	_, err := e.runtime.CreateContainer(context.Background(), &runtimeapi.CreateContainerRequest{PodSandboxId: pod, SandboxConfig: cfg,
		Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "bad"}, Image: &runtimeapi.ImageSpec{Image: e.image},
			Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				Capabilities: &runtimeapi.Capability{AddCapabilities: []string{"CAP_FLY"}}}}}})
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
	assert.ErrorContains(t, err, `unknown capability "CAP_FLY"`)

	// An exec never has more privilege than its container.
	id := e.create(t, pod, cfg, &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "sleeper"}, Image: &runtimeapi.ImageSpec{Image: e.image},
		Command: []string{"sleep", "1000"},
		Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
			RunAsUser: &runtimeapi.Int64Value{Value: 0}, NoNewPrivs: true,
			Capabilities: &runtimeapi.Capability{DropCapabilities: []string{"ALL"}},
			Seccomp:      &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}}}})
	_, err = e.runtime.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: id})
	require.NoError(t, err)
	resp, err := e.runtime.ExecSync(context.Background(), &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"/bin/sh", "-c", statusScript}})
	require.NoError(t, err)
	assert.Contains(t, string(resp.Stdout), "CapEff: 0000000000000000")
	assert.Contains(t, string(resp.Stdout), "NoNewPrivs: 1")
	assert.Contains(t, string(resp.Stdout), "Seccomp: 2")
}

func TestSeccompProfiles(t *testing.T) {
	e := newPodEnv(t)
	cfg := e.podConfig("seccomp", nil)
	pod := e.runPod(t, cfg)
	sysAdmin := &runtimeapi.Capability{AddCapabilities: []string{"SYS_ADMIN"}}
	mount := statusScript + `mkdir -p /tmp/m && mount -t tmpfs t /tmp/m && echo mounted; unshare -n true && echo unshared`

	out, _ := e.runWith(t, pod, cfg, "unconfined", &runtimeapi.LinuxContainerSecurityContext{Capabilities: sysAdmin,
		Seccomp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}}, mount)
	assert.Contains(t, out, "mounted", "with CAP_SYS_ADMIN and no filter, mount works")
	assert.Contains(t, out, "unshared")

	out, _ = e.runWith(t, pod, cfg, "default", &runtimeapi.LinuxContainerSecurityContext{Capabilities: sysAdmin,
		Seccomp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}}, mount+`; echo still-running`)
	assert.Contains(t, out, "Seccomp: 2", "the filter is in the kernel")
	assert.NotContains(t, out, "mounted", "RuntimeDefault refuses mount even with CAP_SYS_ADMIN")
	assert.NotContains(t, out, "unshared", "and namespace creation")
	assert.Contains(t, out, "still-running")

	profile := filepath.Join(t.TempDir(), "no-mkdir.json")
	require.NoError(t, os.WriteFile(profile, []byte(`{"defaultAction":"SCMP_ACT_ALLOW",
		"syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}`), 0o644))
	out, _ = e.runWith(t, pod, cfg, "localhost", &runtimeapi.LinuxContainerSecurityContext{
		Seccomp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: profile}},
		`mkdir /tmp/x 2>&1; touch /tmp/y && echo touched`)
	assert.Contains(t, out, "Operation not permitted", "mkdir refused by the local profile")
	assert.Contains(t, out, "touched")

	_, err := e.runtime.CreateContainer(context.Background(), &runtimeapi.CreateContainerRequest{PodSandboxId: pod, SandboxConfig: cfg,
		Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "missing"}, Image: &runtimeapi.ImageSpec{Image: e.image},
			Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				Seccomp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "/nonexistent.json"}}}}})
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
}

func TestReadonlyAndMaskedPathsAndLSM(t *testing.T) {
	e := newPodEnv(t)
	cfg := e.podConfig("paths", nil)
	pod := e.runPod(t, cfg)
	out, _ := e.runWith(t, pod, cfg, "ro", &runtimeapi.LinuxContainerSecurityContext{ReadonlyRootfs: true},
		`touch /rootfile 2>&1; touch /tmp/tmpfile 2>&1; echo keys=$(stat -c %t:%T /proc/keys); (echo 1 > /proc/sys/kernel/domainname) 2>&1; echo firmware=$(ls /sys/firmware | wc -l)`)
	assert.Contains(t, out, "touch: /rootfile: Read-only file system")
	assert.Contains(t, out, "touch: /tmp/tmpfile: Read-only file system", "the whole root is read-only")
	assert.Contains(t, out, "keys=1:3", "/proc/keys is masked by /dev/null")
	assert.Contains(t, out, "/proc/sys/kernel/domainname: Read-only file system", "/proc/sys is read-only")
	assert.Contains(t, out, "firmware=0", "/sys/firmware is masked")

	_, err := e.runtime.CreateContainer(context.Background(), &runtimeapi.CreateContainerRequest{PodSandboxId: pod, SandboxConfig: cfg,
		Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "apparmor"}, Image: &runtimeapi.ImageSpec{Image: e.image},
			Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				Apparmor: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "k8s-custom"}}}}})
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
	assert.ErrorContains(t, err, "not enabled on this node")
	if _, err := os.Stat("/sys/fs/selinux/enforce"); err != nil {
		// Where SELinux is off a label means nothing (containerd and CRI-O ignore it);
		// charts and the conformance suite set seLinuxOptions.level routinely.
		out, code := e.runWith(t, pod, cfg, "selinux", &runtimeapi.LinuxContainerSecurityContext{
			SelinuxOptions: &runtimeapi.SELinuxOption{Level: "s0:c123,c456", Type: "container_t"}}, "echo ok")
		assert.Equal(t, int32(0), code)
		assert.Equal(t, "ok", out)
	}
	out, code := e.runWith(t, pod, cfg, "unconfined-lsm", &runtimeapi.LinuxContainerSecurityContext{
		Apparmor: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}}, "echo ok")
	assert.Equal(t, int32(0), code)
	assert.Equal(t, "ok", out)
}

func TestPrivilegedNeedsTheHandlerToAllowIt(t *testing.T) {
	e := newPodEnvWith(t, "[runtimes.locked]\nallow_privileged = false\n")
	privileged := func(c *runtimeapi.PodSandboxConfig) {
		c.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{Privileged: true}
	}
	for handler, want := range map[string]string{
		"locked": "allow_privileged = false",
		"enroot": "never runs privileged containers",
	} {
		cfg := e.podConfig("priv-"+handler, privileged)
		pod := e.runPodWith(t, cfg, handler)
		_, err := e.runtime.CreateContainer(context.Background(), &runtimeapi.CreateContainerRequest{PodSandboxId: pod, SandboxConfig: cfg,
			Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "p"}, Image: &runtimeapi.ImageSpec{Image: e.image},
				Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{Privileged: true}}}})
		assert.Equal(t, codes.InvalidArgument, status.Code(err), handler)
		assert.ErrorContains(t, err, want, handler)
	}
}

// On the shipped configuration the default handler runs privileged containers, as
// containerd does for kube-proxy and CNI daemonsets.
func TestPrivilegedContainer(t *testing.T) {
	e := newPodEnv(t)
	cfg := e.podConfig("priv", func(c *runtimeapi.PodSandboxConfig) {
		c.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{Privileged: true}
	})
	pod := e.runPod(t, cfg)
	out, code := e.runWith(t, pod, cfg, "p", &runtimeapi.LinuxContainerSecurityContext{Privileged: true},
		statusScript+`test -e /dev/loop-control && echo host-dev; echo keys=$(stat -c %t:%T /proc/keys)`)
	require.Equal(t, int32(0), code, out)
	self, err := os.ReadFile("/proc/self/status")
	require.NoError(t, err)
	var bnd string
	for _, l := range strings.Split(string(self), "\n") {
		if v, ok := strings.CutPrefix(l, "CapBnd:"); ok {
			bnd = strings.TrimSpace(v)
		}
	}
	assert.Contains(t, out, "CapEff: "+bnd, "every capability the runtime itself has")
	assert.Contains(t, out, "host-dev")
	assert.Contains(t, out, "keys=0:0", "nothing is masked")
}

// A pod with its own user namespace (hostUsers: false) on the default handler.
func TestUserNamespaces(t *testing.T) {
	e := newPodEnv(t)
	ctx := context.Background()
	mapping := []*runtimeapi.IDMapping{{ContainerId: 0, HostId: 200000, Length: 65536}}
	userns := func(mode runtimeapi.NamespaceMode, m []*runtimeapi.IDMapping) func(*runtimeapi.PodSandboxConfig) {
		return func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{
				UsernsOptions: &runtimeapi.UserNamespace{Mode: mode, Uids: m, Gids: m}}}
		}
	}
	cfg := e.podConfig("userns", userns(runtimeapi.NamespaceMode_POD, mapping))
	pod := e.runPod(t, cfg)
	out, code := e.runWith(t, pod, cfg, "c", nil, `cat /proc/self/uid_map /proc/self/gid_map; id -u
stat -c '%u %n' /bin/busybox /etc/passwd; echo written > /new && stat -c '%u %n' /new
grep -q nobody /etc/passwd && echo image-readable; cat /etc/hostname
head -c1 /dev/zero | wc -c; ls /sys/class/net >/dev/null && echo sys
grep -E '^(CapEff)' /proc/self/status | tr -s '\t' ' '`)
	require.Equal(t, int32(0), code, out)
	assert.Regexp(t, `(?m)^\s+0\s+200000\s+65536$`, out, "the pod's mapping")
	assert.Contains(t, out, "\n0\n", "root inside")
	assert.Contains(t, out, "0 /bin/busybox", "the image's files are the container root's")
	assert.Contains(t, out, "0 /new", "and so is what it writes")
	assert.Contains(t, out, "image-readable")
	assert.Contains(t, out, "userns\n", "the pod's hostname")
	assert.Contains(t, out, "1\nsys")

	// On the host the container's processes run as the mapped IDs.
	id := e.create(t, pod, cfg, &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "sleeper"}, Image: &runtimeapi.ImageSpec{Image: e.image},
		Command: []string{"sleep", "100"},
		Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
			RunAsUser: &runtimeapi.Int64Value{Value: 0}}},
	})
	_, err := e.runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id})
	require.NoError(t, err)
	st, err := e.runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id, Verbose: true})
	require.NoError(t, err)
	var info struct {
		Pid int `json:"pid"`
	}
	require.NoError(t, jsonUnmarshal(st.Info["info"], &info))
	procStatus, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", info.Pid))
	require.NoError(t, err)
	assert.Regexp(t, `(?m)^Uid:\s+200000\s`, string(procStatus))
	res, err := e.runtime.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"cat", "/proc/self/uid_map"}, Timeout: 10})
	require.NoError(t, err)
	assert.Regexp(t, `^\s+0\s+200000\s+65536`, string(res.Stdout), "exec joins the user namespace")

	// What the kubelet may not send is refused before anything is made.
	for name, opt := range map[string]func(*runtimeapi.PodSandboxConfig){
		"two mappings": userns(runtimeapi.NamespaceMode_POD, append(mapping, &runtimeapi.IDMapping{ContainerId: 0, HostId: 300000, Length: 10})),
		"0 unmapped":   userns(runtimeapi.NamespaceMode_POD, []*runtimeapi.IDMapping{{ContainerId: 1, HostId: 200000, Length: 10}}),
		"CONTAINER":    userns(runtimeapi.NamespaceMode_CONTAINER, nil),
		"TARGET":       userns(runtimeapi.NamespaceMode_TARGET, nil),
	} {
		_, err := e.runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: e.podConfig("bad-"+strings.ToLower(strings.ReplaceAll(name, " ", "-")), opt)})
		assert.Equal(t, codes.InvalidArgument, status.Code(err), name)
		assert.Contains(t, status.Convert(err).Message(), "userns_options", name)
	}
}
