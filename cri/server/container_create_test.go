package server

import (
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/cri/server/fake"
	"github.com/enroot-cri/enroot-cri/enroot"
	"github.com/enroot-cri/enroot-cri/errdefs"
)

// TestCreateContainerBuildsTheSpec checks what a create of a pod of the default
// (kubernetes) handler decides: the spec given to the engine and the cgroup made.
func TestCreateContainerBuildsTheSpec(t *testing.T) {
	userns := func(p *runtimeapi.PodSandboxConfig) {
		p.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{
			UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD,
				Uids: []*runtimeapi.IDMapping{{HostId: 1 << 20, ContainerId: 0, Length: 65536}},
				Gids: []*runtimeapi.IDMapping{{HostId: 1 << 20, ContainerId: 0, Length: 65536}}},
		}}
	}
	for _, tc := range []struct {
		name  string
		pod   func(*runtimeapi.PodSandboxConfig)
		ctr   func(*runtimeapi.ContainerConfig)
		check func(t *testing.T, spec *specs.Spec, cg *fake.Cgroup)
	}{{
		name: "an image without USER runs as root with root's home",
		check: func(t *testing.T, spec *specs.Spec, _ *fake.Cgroup) {
			assert.Equal(t, specs.User{UID: 0, GID: 0, AdditionalGids: []uint32{}}, normalUser(spec.Process.User))
			assert.Contains(t, spec.Process.Env, "HOME=/root")
			assert.Contains(t, spec.Process.Env, "FROM_IMAGE=yes")
			assert.Equal(t, []string{"/bin/app"}, spec.Process.Args)
			assert.Equal(t, "/", spec.Process.Cwd)
		},
	}, {
		name: "the pod's environment overrides the image's",
		ctr: func(c *runtimeapi.ContainerConfig) {
			c.Envs = []*runtimeapi.KeyValue{{Key: "SHARED", Value: []byte("pod")}, {Key: "HOME", Value: []byte("/data")}}
		},
		check: func(t *testing.T, spec *specs.Spec, _ *fake.Cgroup) {
			v, _ := enroot.Lookup(spec.Process.Env, "SHARED")
			assert.Equal(t, "pod", v)
			v, _ = enroot.Lookup(spec.Process.Env, "HOME")
			assert.Equal(t, "/data", v)
		},
	}, {
		name: "run_as_user takes its home and groups from the image's files",
		ctr: func(c *runtimeapi.ContainerConfig) {
			c.Linux = &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				RunAsUser: &runtimeapi.Int64Value{Value: 1000}, SupplementalGroups: []int64{5000},
			}}
		},
		check: func(t *testing.T, spec *specs.Spec, _ *fake.Cgroup) {
			u := spec.Process.User
			assert.Equal(t, []uint32{1000, 1000}, []uint32{u.UID, u.GID})
			assert.Subset(t, u.AdditionalGids, []uint32{44, 5000})
			assert.Contains(t, spec.Process.Env, "HOME=/home/app")
		},
	}, {
		name: "an unprivileged container has the default capabilities and masked paths",
		check: func(t *testing.T, spec *specs.Spec, _ *fake.Cgroup) {
			caps := spec.Process.Capabilities
			require.NotNil(t, caps)
			assert.Contains(t, caps.Bounding, "CAP_CHOWN")
			assert.NotContains(t, caps.Bounding, "CAP_SYS_ADMIN")
			assert.NotContains(t, caps.Effective, "CAP_SYS_MODULE")
			assert.Contains(t, spec.Linux.MaskedPaths, "/proc/kcore")
			assert.Contains(t, spec.Linux.ReadonlyPaths, "/proc/sys")
		},
	}, {
		name: "a read-only root stays read-only",
		ctr: func(c *runtimeapi.ContainerConfig) {
			c.Linux = &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{ReadonlyRootfs: true}}
		},
		check: func(t *testing.T, spec *specs.Spec, _ *fake.Cgroup) { assert.True(t, spec.Root.Readonly) },
	}, {
		name: "resources confine the container's cgroup under the pod's",
		ctr: func(c *runtimeapi.ContainerConfig) {
			c.Linux = &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{
				MemoryLimitInBytes: 64 << 20, CpuPeriod: 100000, CpuQuota: 50000,
			}}
		},
		check: func(t *testing.T, _ *specs.Spec, cg *fake.Cgroup) {
			require.NotNil(t, cg.Resources.Memory)
			assert.Equal(t, int64(64<<20), *cg.Resources.Memory.Limit)
			require.NotNil(t, cg.Resources.CPU)
			assert.Equal(t, int64(50000), *cg.Resources.CPU.Quota)
		},
	}, {
		name: "a pod with its own user namespace maps the container into it",
		pod:  userns,
		check: func(t *testing.T, spec *specs.Spec, _ *fake.Cgroup) {
			assert.Equal(t, []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1 << 20, Size: 65536}}, spec.Linux.UIDMappings)
			assert.True(t, slices.ContainsFunc(spec.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == specs.UserNamespace }))
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			n := newFakeNode(t, nil)
			_, id, err := n.podWithContainer(t, "", tc.pod, tc.ctr)
			require.NoError(t, err)
			ccfg := n.Engine.Config(id)
			require.NotNil(t, ccfg)
			c, err := n.srv.recs.container(id)
			require.NoError(t, err)
			assert.Equal(t, "/kubepods/podp/"+id, c.CgroupPath)
			cg := n.Cgroups.Get(c.CgroupPath)
			require.NotNil(t, cg)
			tc.check(t, &ccfg.Spec, cg)
		})
	}
}

func normalUser(u specs.User) specs.User {
	if u.AdditionalGids == nil {
		u.AdditionalGids = []uint32{}
	}
	return u
}

// TestCreateContainerRefusesBadRequests checks that a bad request is InvalidArgument
// naming the field, and that it leaves nothing behind.
func TestCreateContainerRefusesBadRequests(t *testing.T) {
	n := newFakeNode(t, nil)
	pod := podConfig("p")
	podID := n.runPod(t, pod, "")
	for _, tc := range []struct {
		name, field string
		edit        func(*runtimeapi.ContainerConfig)
	}{
		{"no name", "config.metadata.name", func(c *runtimeapi.ContainerConfig) { c.Metadata.Name = "" }},
		{"a negative supplemental group", "supplemental_groups[0]", func(c *runtimeapi.ContainerConfig) {
			c.Linux = &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{SupplementalGroups: []int64{-1}}}
		}},
		{"a group without a user", "run_as_group needs run_as_user", func(c *runtimeapi.ContainerConfig) {
			c.Linux = &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{RunAsGroup: &runtimeapi.Int64Value{Value: 5}}}
		}},
		{"an environment name with =", "config.envs[1]", func(c *runtimeapi.ContainerConfig) {
			c.Envs = []*runtimeapi.KeyValue{{Key: "A", Value: []byte("1")}, {Key: "B=C", Value: []byte("2")}}
		}},
		{"a CPU period out of range", "config.linux.resources.cpu_period", func(c *runtimeapi.ContainerConfig) {
			c.Linux = &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{CpuPeriod: 10}}
		}},
		{"a cpuset that is not a CPU list", "config.linux.resources.cpuset_cpus", func(c *runtimeapi.ContainerConfig) {
			c.Linux = &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{CpusetCpus: "0-x"}}
		}},
		{"a user the image does not have", "user", func(c *runtimeapi.ContainerConfig) {
			c.Linux = &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{RunAsUsername: "nobody-here"}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := containerConfig("c")
			tc.edit(cfg)
			_, err := n.create(podID, pod, cfg)
			require.ErrorIs(t, err, errdefs.ErrInvalidArgument)
			assert.ErrorContains(t, err, tc.field)
			n.assertNothingHeld(t)
		})
	}
	t.Run("privileged in a pod with its own user namespace", func(t *testing.T) {
		upod := podConfig("u")
		upod.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{
			UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD,
				Uids: []*runtimeapi.IDMapping{{HostId: 1 << 20, Length: 65536}}, Gids: []*runtimeapi.IDMapping{{HostId: 1 << 20, Length: 65536}}},
		}}
		upodID := n.runPod(t, upod, "")
		cfg := containerConfig("c")
		cfg.Linux = &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{Privileged: true}}
		_, err := n.create(upodID, upod, cfg)
		require.ErrorIs(t, err, errdefs.ErrInvalidArgument)
		assert.ErrorContains(t, err, "privileged")
		n.assertNothingHeld(t)
	})
	t.Run("an image the node does not have", func(t *testing.T) {
		cfg := containerConfig("c")
		cfg.Image.Image = "example.test/missing:1"
		_, err := n.create(podID, pod, cfg)
		require.ErrorIs(t, err, errdefs.ErrNotFound)
		assert.ErrorContains(t, err, "pull it first")
	})
}

// TestCreateContainerUndoesEveryStep makes each step of a create fail in turn and
// checks that what the steps before it took is given back, then that the same create
// succeeds once nothing fails.
func TestCreateContainerUndoesEveryStep(t *testing.T) {
	for _, step := range []string{"Mounts.Acquire", "Cgroups.Create", "Engine.Create"} {
		t.Run(step, func(t *testing.T) {
			n := newFakeNode(t, nil)
			pod := podConfig("p")
			podID := n.runPod(t, pod, "")
			cfg := containerConfig("c")
			n.Faults.Fail(step, fake.ErrInjected)
			_, err := n.create(podID, pod, cfg)
			require.ErrorIs(t, err, fake.ErrInjected)
			n.assertNothingHeld(t)
			n.Faults.Clear()
			id, err := n.create(podID, pod, cfg)
			require.NoError(t, err, "the name is free again")
			assert.Equal(t, []string{id}, n.Engine.IDs())
			assert.Equal(t, map[string]int{testImage.ID: 1}, n.Mounts.Users())
		})
	}
}

// assertNothingHeld checks that no container is left: no record, bundle, cgroup, image
// mount, GPU claim or pending create.
func (n *fakeNode) assertNothingHeld(t *testing.T) {
	t.Helper()
	assert.Empty(t, n.srv.recs.allContainers(), "container records")
	assert.Empty(t, n.Engine.IDs(), "containers in the engine")
	assert.Empty(t, n.Mounts.Users(), "image mounts")
	for _, p := range n.Cgroups.Paths() {
		assert.Fail(t, "a cgroup is left", p)
	}
	assert.Empty(t, n.pendingCreates(t), "pending creates")
	claims, err := n.ledger.Read()
	require.NoError(t, err)
	assert.Empty(t, claims.Devices, "GPU claims")
}

// TestConcurrentCreatesOfOneNameGiveOneContainer checks that two creates of the same
// name and attempt in a pod cannot both succeed.
func TestConcurrentCreatesOfOneNameGiveOneContainer(t *testing.T) {
	n := newFakeNode(t, nil)
	pod := podConfig("p")
	podID := n.runPod(t, pod, "")
	ok, errs := concurrently(8, func() error {
		_, err := n.create(podID, pod, containerConfig("same"))
		return err
	})
	assert.Equal(t, 1, ok)
	for _, err := range errs {
		assert.ErrorIs(t, err, errdefs.ErrAlreadyExists)
	}
	assert.Len(t, n.Engine.IDs(), 1)
}
