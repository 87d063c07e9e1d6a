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

// procStatus runs a container with sc and returns its CapEff, NoNewPrivs and Seccomp
// lines and the output of script after them.
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

	for name, sc := range map[string]*runtimeapi.LinuxContainerSecurityContext{
		"apparmor": {Apparmor: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "k8s-custom"}},
		"selinux":  {SelinuxOptions: &runtimeapi.SELinuxOption{Type: "container_t"}},
	} {
		_, err := e.runtime.CreateContainer(context.Background(), &runtimeapi.CreateContainerRequest{PodSandboxId: pod, SandboxConfig: cfg,
			Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: name}, Image: &runtimeapi.ImageSpec{Image: e.image},
				Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: sc}}})
		assert.Equal(t, codes.InvalidArgument, status.Code(err), name)
		assert.ErrorContains(t, err, "not enabled on this node", name)
	}
	out, code := e.runWith(t, pod, cfg, "unconfined-lsm", &runtimeapi.LinuxContainerSecurityContext{
		Apparmor: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}}, "echo ok")
	assert.Equal(t, int32(0), code)
	assert.Equal(t, "ok", out)
}

func TestPrivilegedNeedsTheHandlerToAllowIt(t *testing.T) {
	e := newPodEnv(t)
	cfg := e.podConfig("priv", func(c *runtimeapi.PodSandboxConfig) {
		c.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{Privileged: true}
	})
	pod := e.runPod(t, cfg)
	_, err := e.runtime.CreateContainer(context.Background(), &runtimeapi.CreateContainerRequest{PodSandboxId: pod, SandboxConfig: cfg,
		Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "p"}, Image: &runtimeapi.ImageSpec{Image: e.image},
			Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{Privileged: true}}}})
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
	assert.ErrorContains(t, err, "allow_privileged = false")
}

func TestPrivilegedContainer(t *testing.T) {
	e := newPodEnvWith(t, "[runtimes.enroot]\nallow_privileged = true\n")
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

func TestUserNamespaces(t *testing.T) {
	// The node's Enroot hooks run for containers in user namespaces too; like
	// /etc/enroot, their directory must be readable by the container's root.
	site, err := os.MkdirTemp("", "enroot-site-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(site) })
	require.NoError(t, os.Chmod(site, 0o755))
	writeFiles(t, site, map[string]string{"hooks.d/10-env.sh": "#!/bin/sh\necho HOOKED=yes >> \"$ENROOT_ENVIRON\"\n"})
	e := newPodEnvWith(t, fmt.Sprintf("[runtimes.enroot]\nenroot_config_dir = %q\n", site))
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
grep -E '^(CapEff)' /proc/self/status | tr -s '\t' ' '; echo "hook=$HOOKED"`)
	require.Equal(t, int32(0), code, out)
	assert.Contains(t, out, "hook=yes")
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
	_, err = e.runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id})
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

// A handler with remap_root runs its pods as Enroot's `enroot start --root` does.
func TestRemapRootHandler(t *testing.T) {
	e := newPodEnvWith(t, "[runtimes.remap]\nremap_root = true\nremap_root_uid = 300000\nremap_root_gid = 300001\n")
	ctx := context.Background()
	cfg := e.podConfig("remap", nil)
	resp, err := e.runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg, RuntimeHandler: "remap"})
	require.NoError(t, err)
	pod := resp.PodSandboxId
	out, code := e.runWith(t, pod, cfg, "c", nil, `cat /proc/self/uid_map /proc/self/gid_map; id -u
echo x > /tmp/f; chown 1234:1234 /tmp/f; echo chown=$?; stat -c '%u:%g' /tmp/f;
stat -c '%u %n' /bin/busybox
grep -E '^(CapEff|Seccomp):' /proc/self/status | tr -s '\t' ' '`)
	require.Equal(t, int32(0), code, out)
	assert.Regexp(t, `(?m)^\s*0\s+300000\s+1\n\s*0\s+300001\s+1$`, out, "only root is mapped")
	assert.Contains(t, out, "chown=0\n0:0\n", "chown succeeds without effect (Enroot's seccomp filter)")
	assert.Contains(t, out, "0 /bin/busybox", "the image's root files are root's")
	assert.Contains(t, out, "Seccomp: 2")

	_, err = e.runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, SandboxConfig: cfg,
		Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "user"}, Image: &runtimeapi.ImageSpec{Image: e.image},
			Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				RunAsUser: &runtimeapi.Int64Value{Value: 1000}}}}})
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
	assert.Contains(t, status.Convert(err).Message(), `runtime handler "remap" remaps root`)
}
