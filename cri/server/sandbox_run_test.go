package server

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/cri/server/fake"
	"github.com/enroot-cri/enroot-cri/errdefs"
)

// TestRunPodSandboxDecidesTheNamespaces checks what a pod's sandbox is made with, by
// its namespace options and handler.
func TestRunPodSandboxDecidesTheNamespaces(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		handler               string
		ns                    *runtimeapi.NamespaceOption
		net, ipc, pid, online bool
	}{
		// NamespaceMode's zero value is POD: the kubelet sends CONTAINER for a pod that
		// does not share its process namespace.
		{name: "a pod of the default handler", ns: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER}, net: true, ipc: true, online: true},
		{name: "a pod sharing its PID namespace", ns: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_POD}, net: true, ipc: true, pid: true, online: true},
		{name: "a pod on the host's network and IPC", ns: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE, Ipc: runtimeapi.NamespaceMode_NODE, Pid: runtimeapi.NamespaceMode_CONTAINER}},
		// An enroot pod's containers have their own user namespaces: a PID namespace of
		// the host's user namespace would keep them from mounting /proc.
		{name: "an enroot pod sharing its PID namespace", handler: "enroot", ns: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_POD}, net: true, ipc: true, online: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newFakeNode(t, nil)
			cfg := podConfig("p")
			cfg.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: tc.ns}
			id := n.runPod(t, cfg, tc.handler)
			opts, ok := n.Sandboxes.Live()[n.srv.podDir(id)]
			require.True(t, ok)
			assert.Equal(t, []bool{tc.net, tc.ipc, tc.pid}, []bool{opts.Net, opts.IPC, opts.PID})
			_, online := n.Network.Attached()[id]
			assert.Equal(t, tc.online, online, "attached to the CNI network")
			for _, f := range []string{"hostname", "hosts", "resolv.conf"} {
				assert.FileExists(t, filepath.Join(n.srv.podDir(id), f))
			}
		})
	}
}

// TestRunPodSandboxUndoesEveryStep makes each step of a pod's creation fail in turn
// and checks that nothing of the pod is left, nor its name taken.
func TestRunPodSandboxUndoesEveryStep(t *testing.T) {
	for _, step := range []string{"Sandboxes.Create", "Network.Setup"} {
		t.Run(step, func(t *testing.T) {
			n := newFakeNode(t, nil)
			n.Faults.Fail(step, fake.ErrInjected)
			_, err := n.srv.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: podConfig("p")})
			require.ErrorIs(t, err, fake.ErrInjected)
			assert.Empty(t, n.srv.recs.allPods())
			assert.Empty(t, n.Sandboxes.Live())
			assert.Empty(t, n.Network.Attached())
			assert.Empty(t, n.pendingCreates(t))
			entries, err := os.ReadDir(filepath.Join(n.cfg.State, "pods"))
			if !errors.Is(err, os.ErrNotExist) {
				require.NoError(t, err)
				assert.Empty(t, entries, "pod directories")
			}
			n.Faults.Clear()
			n.runPod(t, podConfig("p"), "")
		})
	}
}

func TestRunPodSandboxRefusesBadRequests(t *testing.T) {
	n := newFakeNode(t, nil)
	for _, tc := range []struct {
		name, handler, field string
		edit                 func(*runtimeapi.PodSandboxConfig)
	}{
		{"no namespace", "", "config.metadata needs name, namespace and uid", func(c *runtimeapi.PodSandboxConfig) { c.Metadata.Namespace = "" }},
		{"an unknown handler", "nvidia", `runtime_handler "nvidia" is not configured; configured handlers: enroot, kubernetes`, nil},
		{"two UID mappings", "", "userns_options.uids: exactly one mapping", func(c *runtimeapi.PodSandboxConfig) {
			m := []*runtimeapi.IDMapping{{HostId: 1 << 20, Length: 65536}, {HostId: 1 << 21, ContainerId: 65536, Length: 1}}
			c.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{
				UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: m, Gids: m[:1]}}}
		}},
		{"a host root mapping", "", "host_id 0 would make the container's root the host's", func(c *runtimeapi.PodSandboxConfig) {
			m := []*runtimeapi.IDMapping{{HostId: 0, Length: 65536}}
			c.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{
				UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: m, Gids: m}}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := podConfig("p")
			if tc.edit != nil {
				tc.edit(cfg)
			}
			_, err := n.srv.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: cfg, RuntimeHandler: tc.handler})
			require.ErrorIs(t, err, errdefs.ErrInvalidArgument)
			assert.ErrorContains(t, err, tc.field)
			assert.Empty(t, n.Sandboxes.Live())
		})
	}
}

// TestConcurrentPodsOfOneNameGiveOnePod: two RunPodSandbox calls of one name and
// attempt cannot both succeed (the kubelet retries a call that timed out).
func TestConcurrentPodsOfOneNameGiveOnePod(t *testing.T) {
	n := newFakeNode(t, nil)
	ok, errs := concurrently(8, func() error {
		_, err := n.srv.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: podConfig("same")})
		return err
	})
	assert.Equal(t, 1, ok)
	for _, err := range errs {
		assert.ErrorIs(t, err, errdefs.ErrAlreadyExists)
	}
	assert.Len(t, n.Sandboxes.Live(), 1)
}

// TestStopAndRemoveAPod: a stop ends the pod's containers and takes its address; a
// removal removes them and its sandbox, and is done once.
func TestStopAndRemoveAPod(t *testing.T) {
	n := newFakeNode(t, nil)
	podID, id := n.startedContainer(t)
	_, err := n.srv.StopPodSandbox(context.Background(), &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID})
	require.NoError(t, err)
	assert.Equal(t, runtimeapi.ContainerState_CONTAINER_EXITED, n.status(t, id).GetState())
	assert.Empty(t, n.Network.Attached())
	resp, err := n.srv.PodSandboxStatus(context.Background(), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: podID})
	require.NoError(t, err)
	assert.Equal(t, runtimeapi.PodSandboxState_SANDBOX_NOTREADY, resp.GetStatus().GetState())
	_, err = n.create(podID, podConfig("p"), containerConfig("late"))
	require.ErrorIs(t, err, errdefs.ErrFailedPrecondition, "no container is created in a stopped pod")

	for range 2 {
		_, err = n.srv.RemovePodSandbox(context.Background(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID})
		require.NoError(t, err)
	}
	assert.Empty(t, n.Sandboxes.Live())
	assert.Empty(t, n.srv.recs.allPods())
	n.assertNothingHeld(t)
}
