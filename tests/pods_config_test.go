package tests

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestPodDNSSysctlsAndUsers(t *testing.T) {
	e := newPodEnv(t)
	cfg := e.podConfig("conf", func(c *runtimeapi.PodSandboxConfig) {
		c.DnsConfig = &runtimeapi.DNSConfig{Servers: []string{"10.96.0.10"}, Searches: []string{"test.svc.cluster.local"}, Options: []string{"ndots:5"}}
		c.Linux.Sysctls = map[string]string{"net.ipv4.ip_unprivileged_port_start": "80", "kernel.shm_rmid_forced": "1"}
	})
	pod := e.runPod(t, cfg)
	uid, gid := int64(1234), int64(5678)
	id := e.create(t, pod, cfg, &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "c"}, Image: &runtimeapi.ImageSpec{Image: e.image},
		Command: []string{"/bin/sh", "-c", `cat /etc/resolv.conf; hostname; id -u; id -g; id -G; ` +
			`cat /proc/sys/net/ipv4/ip_unprivileged_port_start /proc/sys/kernel/shm_rmid_forced /proc/self/oom_score_adj; echo "$FOO"; pwd`},
		Envs:       []*runtimeapi.KeyValue{{Key: "FOO", Value: []byte("bar")}},
		WorkingDir: "/tmp/work",
		LogPath:    "c.log",
		Linux: &runtimeapi.LinuxContainerConfig{
			Resources: &runtimeapi.LinuxContainerResources{OomScoreAdj: -998, MemoryLimitInBytes: 64 << 20},
			SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				RunAsUser: &runtimeapi.Int64Value{Value: uid}, RunAsGroup: &runtimeapi.Int64Value{Value: gid},
				SupplementalGroups: []int64{4242},
			},
		},
	})
	_, err := e.runtime.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: id})
	require.NoError(t, err)
	st := e.waitExited(t, id)
	require.Equal(t, int32(0), st.ExitCode, e.logText(t, id))
	out := lines(e.crictl(t, "logs", id))
	assert.Equal(t, []string{
		"nameserver 10.96.0.10", "search test.svc.cluster.local", "options ndots:5", "conf",
		"1234", "5678", "5678 4242", "80", "1",
		"0", // a negative oom_score_adj is clamped to the daemon's own instead of failing
		"bar", "/tmp/work",
	}, out)
	assert.Equal(t, uid, st.User.Linux.Uid)
	assert.Equal(t, []int64{5678, 4242}, st.User.Linux.SupplementalGroups, "the primary group first, as id -G lists them")

	byName := e.create(t, pod, cfg, &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "named"}, Image: &runtimeapi.ImageSpec{Image: e.image},
		Command: []string{"id"}, LogPath: "named.log",
		Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{RunAsUsername: "nobody"}},
	})
	_, err = e.runtime.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: byName})
	require.NoError(t, err)
	e.waitExited(t, byName)
	assert.Equal(t, []string{"uid=65534(nobody) gid=65534(nogroup)"}, lines(e.crictl(t, "logs", byName)))

	// Kubernetes allows any name without "=" (envFrom of a configMap with keys such as
	// "data-1"): it reaches the command as it is.
	env := e.create(t, pod, cfg, &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "env"}, Image: &runtimeapi.ImageSpec{Image: e.image},
		Command: []string{"env"}, LogPath: "env.log",
		Envs: []*runtimeapi.KeyValue{{Key: "data-1", Value: []byte("value-1")}, {Key: "p-data.2", Value: []byte("value 2")}},
	})
	_, err = e.runtime.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: env})
	require.NoError(t, err)
	e.waitExited(t, env)
	assert.Subset(t, lines(e.crictl(t, "logs", env)), []string{"data-1=value-1", "p-data.2=value 2"})
}

func TestBadRequestsAreRefusedCleanly(t *testing.T) {
	e := newPodEnv(t)
	ctx := context.Background()
	cfg := e.podConfig("dup", nil)
	pod := e.runPod(t, cfg)

	_, err := e.runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
	assert.Equal(t, codes.AlreadyExists, status.Code(err), "%v", err)
	_, err = e.runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: e.podConfig("x", nil), RuntimeHandler: "kata"})
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
	assert.ErrorContains(t, err, "configured handlers: enroot, kubernetes")
	_, err = e.runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: e.podConfig("y", func(c *runtimeapi.PodSandboxConfig) {
		c.Linux.Sysctls = map[string]string{"kernel.hostname": "evil"}
	})})
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
	assert.ErrorContains(t, err, `sysctl "kernel.hostname"`)
	_, err = e.runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: &runtimeapi.PodSandboxConfig{}})
	assert.Equal(t, codes.InvalidArgument, status.Code(err))

	c := &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "c"},
		Image: &runtimeapi.ImageSpec{Image: e.image}, Command: []string{"true"}}
	e.create(t, pod, cfg, c)
	_, err = e.runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: c, SandboxConfig: cfg})
	assert.Equal(t, codes.AlreadyExists, status.Code(err))
	_, err = e.runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, SandboxConfig: cfg,
		Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "d"}, Image: &runtimeapi.ImageSpec{Image: "never/pulled:1"}}})
	assert.Equal(t, codes.NotFound, status.Code(err))
	_, err = e.runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: "nope", Config: c, SandboxConfig: cfg})
	assert.Equal(t, codes.NotFound, status.Code(err))
	_, err = e.runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, SandboxConfig: cfg,
		Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "e"}, Image: &runtimeapi.ImageSpec{Image: e.image},
			Command: []string{"no-such-binary"}}})
	assert.Equal(t, codes.FailedPrecondition, status.Code(err))
	assert.ErrorContains(t, err, `"no-such-binary" not found`)
	_, err = e.runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: "nope"})
	assert.Equal(t, codes.NotFound, status.Code(err))

	// What a pod spec controls is InvalidArgument naming the field, and nothing remains.
	for name, tc := range map[string]struct {
		linux *runtimeapi.LinuxContainerConfig
		want  string
	}{
		"negative uid": {&runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
			RunAsUser: &runtimeapi.Int64Value{Value: -1}}}, "run_as_user -1"},
		"negative memory": {&runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: -5}},
			"memory_limit_in_bytes"},
		"bad cpuset": {&runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{CpusetCpus: "0-x"}}, "cpuset_cpus"},
		"tiny quota": {&runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{CpuQuota: 5}}, "cpu_quota"},
		"oom score":  {&runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{OomScoreAdj: 5000}}, "oom_score_adj"},
	} {
		_, err := e.runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, SandboxConfig: cfg,
			Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "bad"}, Image: &runtimeapi.ImageSpec{Image: e.image},
				Command: []string{"true"}, Linux: tc.linux}})
		assert.Equal(t, codes.InvalidArgument, status.Code(err), "%s: %v", name, err)
		assert.ErrorContains(t, err, tc.want, name)
	}
	list, err := e.runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	require.NoError(t, err)
	assert.Len(t, list.Containers, 1, "refused containers leave nothing")

	// Every container has a pids limit of its own (cgroups.pids_limit).
	out, _ := e.runWith(t, pod, cfg, "pids", nil, `cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max`)
	assert.Equal(t, "32768", out)
}

func TestCNIFailureLeavesNothing(t *testing.T) {
	e := newPodEnv(t)
	conf := filepath.Join(e.dir, "cni", "10-test.conflist")
	require.NoError(t, os.WriteFile(conf, []byte(`{"cniVersion":"1.0.0","name":"broken","plugins":[{"type":"no-such-plugin"}]}`), 0o644))
	_, err := e.runtime.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: e.podConfig("broken", nil)})
	require.Error(t, err)
	assert.ErrorContains(t, err, "no-such-plugin")
	pods, err := e.runtime.ListPodSandbox(context.Background(), &runtimeapi.ListPodSandboxRequest{})
	require.NoError(t, err)
	assert.Empty(t, pods.Items)
	// The leak check in the cleanup proves no namespace pin or mount remains.
}

func TestDevicesMountsAndFilters(t *testing.T) {
	e := newPodEnv(t)
	ctx := context.Background()
	cfg := e.podConfig("devs", nil)
	pod := e.runPod(t, cfg)
	other := e.runPod(t, e.podConfig("other", nil))
	data := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(data, "in"), []byte("from-host\n"), 0o644))
	id := e.create(t, pod, cfg, &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "c"}, Image: &runtimeapi.ImageSpec{Image: e.image},
		Command: []string{"/bin/sh", "-c", `echo x > /dev/mynull && cat /data/in && echo out > /data/out && ! touch /ro/x 2>/dev/null && echo done`},
		Devices: []*runtimeapi.Device{{HostPath: "/dev/null", ContainerPath: "/dev/mynull", Permissions: "rwm"}},
		Mounts: []*runtimeapi.Mount{{HostPath: data, ContainerPath: "/data"},
			{HostPath: data, ContainerPath: "/ro", Readonly: true}},
		Labels: map[string]string{"tier": "backend"}, LogPath: "c.log",
		Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
			RunAsUser: &runtimeapi.Int64Value{Value: 0}}},
	})
	_, err := e.runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id})
	require.NoError(t, err)
	st := e.waitExited(t, id)
	assert.Equal(t, int32(0), st.ExitCode, e.logText(t, id))
	assert.Equal(t, []string{"from-host", "done"}, lines(e.crictl(t, "logs", id)))
	out, err := os.ReadFile(filepath.Join(data, "out"))
	require.NoError(t, err)
	assert.Equal(t, "out\n", string(out), "a read-write mount writes through to the host")

	list, err := e.runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{
		LabelSelector: map[string]string{"tier": "backend"}}})
	require.NoError(t, err)
	require.Len(t, list.Containers, 1)
	assert.Equal(t, id, list.Containers[0].Id)
	list, err = e.runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{Id: id[:12]}})
	require.NoError(t, err)
	assert.Len(t, list.Containers, 1, "a unique ID prefix finds the container")
	pods, err := e.runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{
		LabelSelector: map[string]string{"app": "other"}}})
	require.NoError(t, err)
	require.Len(t, pods.Items, 1)
	assert.Equal(t, other, pods.Items[0].Id)
	pods, err = e.runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{
		State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}}})
	require.NoError(t, err)
	assert.Len(t, pods.Items, 2)
}

func TestImageVolumes(t *testing.T) {
	e := newPodEnv(t)
	ctx := context.Background()
	cfg := e.podConfig("imgvol", nil)
	pod := e.runPod(t, cfg)
	id := e.create(t, pod, cfg, &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "c"}, Image: &runtimeapi.ImageSpec{Image: e.image},
		Command: []string{"/bin/sh", "-c", `ls /vol/bin/busybox /etc-only/passwd && touch /vol/x 2>&1; echo done`},
		Mounts: []*runtimeapi.Mount{
			{ContainerPath: "/vol", Readonly: true, Image: &runtimeapi.ImageSpec{Image: e.image}},
			{ContainerPath: "/etc-only", Readonly: true, Image: &runtimeapi.ImageSpec{Image: e.image}, ImageSubPath: "etc"},
		},
		LogPath: "c.log",
		Linux:   &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{RunAsUser: &runtimeapi.Int64Value{}}},
	})
	_, err := e.runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id})
	require.NoError(t, err)
	st := e.waitExited(t, id)
	out := e.crictl(t, "logs", id)
	assert.Contains(t, out, "/vol/bin/busybox")
	assert.Contains(t, out, "/etc-only/passwd", "image_sub_path mounts only that directory")
	assert.Contains(t, out, "Read-only file system")
	img, err := e.images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: e.image}})
	require.NoError(t, err)
	require.Len(t, st.Mounts, 2)
	assert.Equal(t, img.Image.Id, st.Mounts[0].Image.ImageRef, "the status names the mounted image")

	_, err = e.runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, SandboxConfig: cfg,
		Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "escape"}, Image: &runtimeapi.ImageSpec{Image: e.image},
			Mounts: []*runtimeapi.Mount{{ContainerPath: "/x", Readonly: true, Image: &runtimeapi.ImageSpec{Image: e.image}, ImageSubPath: "../../etc"}}}})
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
	assert.Contains(t, status.Convert(err).Message(), "image_sub_path")
	_, err = e.runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, SandboxConfig: cfg,
		Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "rw"}, Image: &runtimeapi.ImageSpec{Image: e.image},
			Mounts: []*runtimeapi.Mount{{ContainerPath: "/x", Image: &runtimeapi.ImageSpec{Image: e.image}}}}})
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
	assert.Contains(t, status.Convert(err).Message(), "config.mounts[0]: an image volume is always read-only")
}

func TestRecursiveReadOnlyMounts(t *testing.T) {
	e := newPodEnv(t)
	ctx := context.Background()
	st, err := e.runtime.Status(ctx, &runtimeapi.StatusRequest{})
	require.NoError(t, err)
	require.NotEmpty(t, st.RuntimeHandlers)
	assert.True(t, st.RuntimeHandlers[0].Features.RecursiveReadOnlyMounts)

	cfg := e.podConfig("rro", nil)
	pod := e.runPod(t, cfg)
	host := t.TempDir()
	sub := filepath.Join(host, "sub")
	require.NoError(t, os.Mkdir(sub, 0o777))
	require.NoError(t, exec.Command("mount", "-t", "tmpfs", "t", sub).Run())
	t.Cleanup(func() { _ = exec.Command("umount", "-l", sub).Run() })
	run := func(name string, rro bool) string {
		id := e.create(t, pod, cfg, &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: name}, Image: &runtimeapi.ImageSpec{Image: e.image},
			Command: []string{"/bin/sh", "-c", `touch /mnt/sub/f 2>&1 && echo writable`},
			Mounts:  []*runtimeapi.Mount{{HostPath: host, ContainerPath: "/mnt", Readonly: true, RecursiveReadOnly: rro}},
			LogPath: name + ".log",
			Linux:   &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{RunAsUser: &runtimeapi.Int64Value{}}},
		})
		_, err := e.runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id})
		require.NoError(t, err)
		e.waitExited(t, id)
		return e.crictl(t, "logs", id)
	}
	assert.Contains(t, run("plain", false), "writable", "a read-only bind leaves its submounts writable")
	assert.Contains(t, run("recursive", true), "Read-only file system", "recursive_read_only reaches the submount")

	_, err = e.runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, SandboxConfig: cfg,
		Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "bad"}, Image: &runtimeapi.ImageSpec{Image: e.image},
			Mounts: []*runtimeapi.Mount{{HostPath: host, ContainerPath: "/mnt", RecursiveReadOnly: true}}}})
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
}
