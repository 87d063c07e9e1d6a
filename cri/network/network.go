package network

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/containernetworking/cni/libcni"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/enroot-cri/enroot-cri/errdefs"
)

// extensions are the CNI configuration files the runtime loads, as libcni and
// containerd do.
var extensions = []string{".conf", ".conflist", ".json"}

// Manager runs CNI plugins for pods.
type Manager struct {
	ConfDir  string
	BinDirs  []string
	CacheDir string // libcni's result cache (so that DEL gets ADD's result)
}

// Pod identifies a pod to the plugins.
type Pod struct {
	ID, Name, Namespace, UID string
	NetNS                    string
	PortMappings             []PortMapping
}

// PortMapping is a hostPort mapping, given to plugins with the portMappings capability.
type PortMapping struct {
	HostPort      int32  `json:"hostPort"`
	ContainerPort int32  `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP,omitempty"`
}

// Ready reports whether a network configuration exists.
func (m *Manager) Ready() error {
	_, err := m.config()
	return err
}

// config loads the first network configuration in ConfDir, in name order.
func (m *Manager) config() (*libcni.NetworkConfigList, error) {
	files, err := libcni.ConfFiles(m.ConfDir, extensions)
	if err != nil {
		return nil, fmt.Errorf("read CNI configuration directory %s: %w", m.ConfDir, err)
	}
	sort.Strings(files)
	if len(files) == 0 {
		return nil, fmt.Errorf("no CNI network configuration in %s: %w", m.ConfDir, errdefs.ErrFailedPrecondition)
	}
	list, err := libcni.NetworkConfFromFile(files[0])
	if err != nil {
		return nil, fmt.Errorf("load CNI configuration %s: %w", files[0], err)
	}
	return list, nil
}

func (m *Manager) runtimeConf(p Pod) *libcni.RuntimeConf {
	rt := &libcni.RuntimeConf{
		ContainerID: p.ID,
		NetNS:       p.NetNS,
		IfName:      "eth0",
		Args: [][2]string{
			{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", p.Namespace}, {"K8S_POD_NAME", p.Name},
			{"K8S_POD_INFRA_CONTAINER_ID", p.ID}, {"K8S_POD_UID", p.UID},
		},
		CapabilityArgs: map[string]any{},
	}
	if len(p.PortMappings) > 0 {
		rt.CapabilityArgs["portMappings"] = p.PortMappings
	}
	return rt
}

func (m *Manager) cni() *libcni.CNIConfig {
	return libcni.NewCNIConfigWithCacheDir(m.BinDirs, m.CacheDir, nil)
}

// Setup attaches the pod and returns its IP addresses, the first being the primary.
func (m *Manager) Setup(ctx context.Context, p Pod) ([]string, error) {
	list, err := m.config()
	if err != nil {
		return nil, err
	}
	res, err := m.cni().AddNetworkList(ctx, list, m.runtimeConf(p))
	if err != nil {
		return nil, fmt.Errorf("CNI network %q ADD: %w", list.Name, err)
	}
	r, err := types100.GetResult(res)
	if err != nil {
		return nil, fmt.Errorf("CNI network %q result: %w", list.Name, err)
	}
	var ips []string
	for _, ip := range r.IPs {
		ips = append(ips, ip.Address.IP.String())
	}
	return ips, nil
}

// Teardown detaches the pod; a pod already detached, or whose namespace is gone, is
// fine.
func (m *Manager) Teardown(ctx context.Context, p Pod) error {
	list, err := m.config()
	if err != nil {
		return err
	}
	if p.NetNS != "" {
		if _, err := os.Stat(p.NetNS); errors.Is(err, os.ErrNotExist) {
			p.NetNS = "" // plugins release IPs and rules without entering it
		}
	}
	var last error
	for attempt := 0; attempt < 3; attempt++ {
		if last = m.cni().DelNetworkList(ctx, list, m.runtimeConf(p)); last == nil {
			return nil
		}
	}
	return fmt.Errorf("CNI network %q DEL: %w", list.Name, last)
}

// Check loads the network configuration and finds each of its plugins in BinDirs; it
// returns the network's name and its plugin types.
func (m *Manager) Check() (string, []string, error) {
	list, err := m.config()
	if err != nil {
		return "", nil, err
	}
	var types []string
	for _, p := range list.Plugins {
		t := p.Network.Type
		types = append(types, t)
		found := false
		for _, dir := range m.BinDirs {
			if st, err := os.Stat(filepath.Join(dir, t)); err == nil && st.Mode().IsRegular() {
				found = true
				break
			}
		}
		if !found {
			return list.Name, types, fmt.Errorf("CNI plugin %q of network %q is in none of %s", t, list.Name, strings.Join(m.BinDirs, ", "))
		}
	}
	return list.Name, types, nil
}
