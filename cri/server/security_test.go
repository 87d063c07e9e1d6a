package server

import (
	"path/filepath"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/config"
	"github.com/enroot-cri/enroot-cri/errdefs"
)

// TestSecurityContexts checks the privileges a container of the kubernetes kind gets
// from its security context, and what is refused with the field named.
func TestSecurityContexts(t *testing.T) {
	sc := func(s *runtimeapi.LinuxContainerSecurityContext) func(*runtimeapi.ContainerConfig) {
		return func(c *runtimeapi.ContainerConfig) { c.Linux = &runtimeapi.LinuxContainerConfig{SecurityContext: s} }
	}
	privilegedPod := func(p *runtimeapi.PodSandboxConfig) {
		p.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{Privileged: true}
	}
	profile := filepath.Join(t.TempDir(), "profile.json")
	writeFile(t, profile, `{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}`)
	for _, tc := range []struct {
		name    string
		edit    func(*config.Config, *Options)
		pod     func(*runtimeapi.PodSandboxConfig)
		ctr     func(*runtimeapi.ContainerConfig)
		refused string // the error names this; empty: the create succeeds
		check   func(t *testing.T, spec *specs.Spec)
	}{{
		name: "capabilities added and dropped",
		ctr: sc(&runtimeapi.LinuxContainerSecurityContext{Capabilities: &runtimeapi.Capability{
			AddCapabilities: []string{"NET_ADMIN"}, DropCapabilities: []string{"CAP_CHOWN"}}}),
		check: func(t *testing.T, spec *specs.Spec) {
			assert.Contains(t, spec.Process.Capabilities.Bounding, "CAP_NET_ADMIN")
			assert.NotContains(t, spec.Process.Capabilities.Bounding, "CAP_CHOWN")
			assert.Contains(t, spec.Process.Capabilities.Bounding, "CAP_KILL")
		},
	}, {
		name: "all dropped, one added",
		ctr: sc(&runtimeapi.LinuxContainerSecurityContext{Capabilities: &runtimeapi.Capability{
			AddCapabilities: []string{"NET_BIND_SERVICE"}, DropCapabilities: []string{"ALL"}}}),
		check: func(t *testing.T, spec *specs.Spec) {
			assert.Equal(t, []string{"CAP_NET_BIND_SERVICE"}, spec.Process.Capabilities.Bounding)
			assert.Equal(t, []string{"CAP_NET_BIND_SERVICE"}, spec.Process.Capabilities.Effective)
		},
	}, {
		name:    "an unknown capability",
		ctr:     sc(&runtimeapi.LinuxContainerSecurityContext{Capabilities: &runtimeapi.Capability{AddCapabilities: []string{"CAP_ROOT"}}}),
		refused: `capabilities.add_capabilities: unknown capability "CAP_ROOT"`,
	}, {
		name:  "no_new_privs",
		ctr:   sc(&runtimeapi.LinuxContainerSecurityContext{NoNewPrivs: true}),
		check: func(t *testing.T, spec *specs.Spec) { assert.True(t, spec.Process.NoNewPrivileges) },
	}, {
		name: "the runtime's default seccomp profile",
		ctr: sc(&runtimeapi.LinuxContainerSecurityContext{Seccomp: &runtimeapi.SecurityProfile{
			ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}}),
		check: func(t *testing.T, spec *specs.Spec) {
			require.NotNil(t, spec.Linux.Seccomp)
			assert.Equal(t, specs.ActErrno, spec.Linux.Seccomp.DefaultAction)
		},
	}, {
		name:  "unconfined by the shipped default",
		check: func(t *testing.T, spec *specs.Spec) { assert.Nil(t, spec.Linux.Seccomp) },
	}, {
		// An operator sets default_seccomp = "runtime/default" so that pods which ask
		// for nothing are filtered, as Kubernetes' SeccompDefault does on the kubelet.
		name: "the handler's default profile for a container that asks none",
		edit: func(c *config.Config, _ *Options) {
			h := c.Runtimes["kubernetes"]
			h.DefaultSeccomp = "runtime/default"
			c.Runtimes["kubernetes"] = h
		},
		check: func(t *testing.T, spec *specs.Spec) { assert.NotNil(t, spec.Linux.Seccomp) },
	}, {
		name: "a localhost profile",
		ctr: sc(&runtimeapi.LinuxContainerSecurityContext{Seccomp: &runtimeapi.SecurityProfile{
			ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: profile}}),
		check: func(t *testing.T, spec *specs.Spec) {
			require.NotNil(t, spec.Linux.Seccomp)
			assert.Equal(t, specs.ActErrno, spec.Linux.Seccomp.DefaultAction)
			assert.Equal(t, []string{"read"}, spec.Linux.Seccomp.Syscalls[0].Names)
		},
	}, {
		name: "a relative localhost profile",
		ctr: sc(&runtimeapi.LinuxContainerSecurityContext{Seccomp: &runtimeapi.SecurityProfile{
			ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "profile.json"}}),
		refused: "seccomp.localhost_ref \"profile.json\" must be an absolute path",
	}, {
		name: "a localhost profile that is not there",
		ctr: sc(&runtimeapi.LinuxContainerSecurityContext{Seccomp: &runtimeapi.SecurityProfile{
			ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: profile + ".missing"}}),
		refused: "seccomp.localhost_ref",
	}, {
		name: "masked and read-only paths as asked",
		ctr:  sc(&runtimeapi.LinuxContainerSecurityContext{MaskedPaths: []string{"/proc/x"}, ReadonlyPaths: []string{"/proc/y"}}),
		check: func(t *testing.T, spec *specs.Spec) {
			assert.Equal(t, []string{"/proc/x"}, spec.Linux.MaskedPaths)
			assert.Equal(t, []string{"/proc/y"}, spec.Linux.ReadonlyPaths)
		},
	}, {
		name:    "privileged in a pod that is not",
		ctr:     sc(&runtimeapi.LinuxContainerSecurityContext{Privileged: true}),
		refused: "privileged needs a privileged pod sandbox",
	}, {
		name: "privileged in a privileged pod",
		pod:  privilegedPod,
		ctr:  sc(&runtimeapi.LinuxContainerSecurityContext{Privileged: true}),
		check: func(t *testing.T, spec *specs.Spec) {
			assert.Contains(t, spec.Process.Capabilities.Bounding, "CAP_SYS_ADMIN")
			assert.Empty(t, spec.Linux.MaskedPaths)
			assert.Nil(t, spec.Linux.Seccomp)
			i := slices.IndexFunc(spec.Mounts, func(m specs.Mount) bool { return m.Destination == "/dev" })
			require.GreaterOrEqual(t, i, 0)
			assert.Equal(t, "/dev", spec.Mounts[i].Source, "the host's /dev")
		},
	}, {
		// An operator sets allow_privileged = false on a handler whose pods must never
		// be privileged, whatever admission lets through.
		name: "privileged on a handler that forbids it",
		edit: func(c *config.Config, _ *Options) {
			h := c.Runtimes["kubernetes"]
			h.AllowPrivileged = false
			c.Runtimes["kubernetes"] = h
		},
		pod:     privilegedPod,
		ctr:     sc(&runtimeapi.LinuxContainerSecurityContext{Privileged: true}),
		refused: "allow_privileged = false",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			n := newFakeNode(t, tc.edit)
			_, id, err := n.podWithContainer(t, "", tc.pod, tc.ctr)
			if tc.refused != "" {
				require.ErrorIs(t, err, errdefs.ErrInvalidArgument)
				assert.ErrorContains(t, err, tc.refused)
				n.assertNothingHeld(t)
				return
			}
			require.NoError(t, err)
			tc.check(t, &n.Engine.Config(id).Spec)
		})
	}
}
