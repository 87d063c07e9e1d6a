package server

import (
	"testing"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// What a pod spec controls reaches the handlers as CRI messages: their validation
// must answer every message with a verdict, never a panic.

func FuzzValidateContainer(f *testing.F) {
	for _, c := range []*runtimeapi.ContainerConfig{
		{Metadata: &runtimeapi.ContainerMetadata{Name: "c"}, Image: &runtimeapi.ImageSpec{Image: "busybox"},
			Envs: []*runtimeapi.KeyValue{{Key: "A", Value: []byte("b\nc")}},
			Linux: &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{CpuQuota: -1, CpusetCpus: "0-3,7"},
				SecurityContext: &runtimeapi.LinuxContainerSecurityContext{RunAsUser: &runtimeapi.Int64Value{Value: -1}}}},
		{Mounts: []*runtimeapi.Mount{{ContainerPath: "relative", HostPath: "/x"}}},
	} {
		data, err := proto.Marshal(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var c runtimeapi.ContainerConfig
		if proto.Unmarshal(data, &c) != nil {
			return
		}
		_ = validateContainer(&c)
		_, _ = criMounts(&c)
		_ = gpuNames(&c, true)
		_, _ = capabilities(c.GetLinux().GetSecurityContext(), false)
	})
}

func FuzzValidatePodSandbox(f *testing.F) {
	m := []*runtimeapi.IDMapping{{ContainerId: 0, HostId: 1 << 31, Length: 1 << 31}}
	for _, c := range []*runtimeapi.PodSandboxConfig{
		{Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: m, Gids: m}}}}},
		{DnsConfig: &runtimeapi.DNSConfig{Servers: []string{"1.1.1.1"}, Options: []string{"ndots:5"}}},
	} {
		data, err := proto.Marshal(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var c runtimeapi.PodSandboxConfig
		if proto.Unmarshal(data, &c) != nil {
			return
		}
		_, _, _ = podUserns(&c)
		_, _ = resolvConf(c.GetDnsConfig())
	})
}
