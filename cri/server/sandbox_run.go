package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/cri/network"
	"github.com/enroot-cri/enroot-cri/enroot/sandbox"
	"github.com/enroot-cri/enroot-cri/errdefs"
	"github.com/enroot-cri/enroot-cri/internal/logging"
)

// RunPodSandbox creates a pod: its namespaces, shared memory, network and DNS files.
// A failure leaves no namespace, mount or IP address behind.
func (s *Server) RunPodSandbox(ctx context.Context, req *runtimeapi.RunPodSandboxRequest) (_ *runtimeapi.RunPodSandboxResponse, err error) {
	cfg := req.GetConfig()
	handler, err := s.validatePod(cfg, req.GetRuntimeHandler())
	if err != nil {
		return nil, err
	}
	id := newID()
	release, err := s.reservePodName(cfg.GetMetadata(), id)
	if err != nil {
		return nil, err
	}
	defer release() // after the record is saved, or the undo ran
	ctx = logging.With(ctx, logging.From(ctx).With("pod", cfg.GetMetadata().GetNamespace()+"/"+cfg.GetMetadata().GetName(), "pod_id", id))
	var u undo
	defer u.run(ctx, &err)

	nsOpts := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	hostNet := nsOpts.GetNetwork() == runtimeapi.NamespaceMode_NODE
	uids, _, _ := podUserns(cfg) // validated above
	ownUserns := uids != nil || s.cfg.Runtimes[handler].IsEnroot()
	configJSON, err := protojson.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("encode pod config: %w", err)
	}
	// Written down first: a daemon killed before the record is saved releases the
	// pod's address and ends its holder at its next start.
	if err := s.notePending(pending{ID: id, PodConfig: configJSON}); err != nil {
		return nil, err
	}
	u.push(func() error { return s.donePending(id) })
	sb, err := s.sandboxes.Create(s.podDir(id), sandbox.Options{
		Net: !hostNet, UTS: !hostNet, IPC: nsOpts.GetIpc() != runtimeapi.NamespaceMode_NODE,
		// A shared PID namespace would be the host's user namespace's: a container of a
		// pod with a user namespace could not mount its /proc. Its containers get their
		// own PID namespaces.
		PID:      nsOpts.GetPid() == runtimeapi.NamespaceMode_POD && !ownUserns,
		Hostname: cfg.GetHostname(), Sysctls: cfg.GetLinux().GetSysctls(),
	})
	var serr *sandbox.SysctlError
	if errors.As(err, &serr) {
		return nil, fmt.Errorf("config.linux.sysctls: %w", errdefs.WithKind(err, errdefs.ErrInvalidArgument))
	}
	if err != nil {
		return nil, err
	}
	u.push(func() error { return s.sandboxes.Destroy(sb) })

	rec := &podRecord{ID: id, Handler: handler, State: podReady, CreatedAt: time.Now(), Sandbox: *sb, config: cfg}
	if !hostNet {
		pod := networkPod(rec)
		rec.IPs, err = s.network.Setup(ctx, pod)
		if err != nil {
			return nil, err
		}
		rec.Networked = true
		u.push(func() error { return s.network.Teardown(context.WithoutCancel(ctx), pod) })
	}
	if err := writePodFiles(sb.Dir, cfg, rec.IPs, hostNet); err != nil {
		return nil, err
	}
	rec.Config = configJSON
	if err := s.recs.savePod(rec); err != nil {
		return nil, err
	}
	if err := s.donePending(id); err != nil {
		logging.From(ctx).Warn("forget the pending pod create", "error", err)
	}
	logging.From(ctx).Info("pod sandbox ready", "ips", rec.IPs, "host_network", hostNet)
	return &runtimeapi.RunPodSandboxResponse{PodSandboxId: id}, nil
}

// validatePod checks a pod config and returns the runtime handler to use.
func (s *Server) validatePod(cfg *runtimeapi.PodSandboxConfig, handler string) (string, error) {
	md := cfg.GetMetadata()
	switch {
	case cfg == nil:
		return "", fmt.Errorf("config is missing: %w", errdefs.ErrInvalidArgument)
	case md.GetName() == "" || md.GetNamespace() == "" || md.GetUid() == "":
		return "", fmt.Errorf("config.metadata needs name, namespace and uid (got %q, %q, %q): %w",
			md.GetName(), md.GetNamespace(), md.GetUid(), errdefs.ErrInvalidArgument)
	}
	if _, _, err := podUserns(cfg); err != nil {
		return "", err
	}
	if handler == "" {
		handler = s.cfg.DefaultRuntime
	}
	if _, ok := s.cfg.Runtimes[handler]; !ok {
		return "", fmt.Errorf("runtime_handler %q is not configured; configured handlers: %s: %w",
			handler, strings.Join(s.cfg.RuntimeHandlers(), ", "), errdefs.ErrInvalidArgument)
	}
	return handler, nil
}

// podName is what makes a pod's name unique on the node.
func podName(md *runtimeapi.PodSandboxMetadata) string {
	return fmt.Sprintf("%s/%s (uid %s, attempt %d)", md.GetNamespace(), md.GetName(), md.GetUid(), md.GetAttempt())
}

// reservePodName claims a pod's name for pod id until release, refusing one a pod has
// or a RunPodSandbox in progress claimed: two concurrent calls with the same name
// cannot both succeed.
func (s *Server) reservePodName(md *runtimeapi.PodSandboxMetadata, id string) (release func(), err error) {
	name := podName(md)
	s.podNames.Lock()
	defer s.podNames.Unlock()
	owner, taken := s.reservedPodNames[name]
	for _, p := range s.recs.allPods() {
		if podName(p.config.GetMetadata()) == name {
			owner, taken = p.ID, true
		}
	}
	if taken {
		return nil, fmt.Errorf("pod name %s is already used by pod sandbox %s: %w", name, owner, errdefs.ErrAlreadyExists)
	}
	if s.reservedPodNames == nil {
		s.reservedPodNames = map[string]string{}
	}
	s.reservedPodNames[name] = id
	return func() {
		s.podNames.Lock()
		delete(s.reservedPodNames, name)
		s.podNames.Unlock()
	}, nil
}

func networkPod(p *podRecord) network.Pod {
	md := p.config.GetMetadata()
	pod := network.Pod{ID: p.ID, Name: md.GetName(), Namespace: md.GetNamespace(), UID: md.GetUid(), NetNS: p.Sandbox.NetNS}
	for _, pm := range p.config.GetPortMappings() {
		if pm.GetHostPort() <= 0 {
			continue
		}
		pod.PortMappings = append(pod.PortMappings, network.PortMapping{
			HostPort: pm.GetHostPort(), ContainerPort: pm.GetContainerPort(),
			Protocol: strings.ToLower(pm.GetProtocol().String()), HostIP: pm.GetHostIp(),
		})
	}
	return pod
}

// writePodFiles writes the hostname, resolv.conf and hosts files the pod's
// containers get.
func writePodFiles(dir string, cfg *runtimeapi.PodSandboxConfig, ips []string, hostNet bool) error {
	hostname := cfg.GetHostname()
	if hostNet || hostname == "" {
		hostname, _ = os.Hostname()
	}
	resolv, err := resolvConf(cfg.GetDnsConfig())
	if err != nil {
		return err
	}
	hosts := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
	if hostNet {
		data, err := os.ReadFile("/etc/hosts")
		if err != nil {
			return fmt.Errorf("read host /etc/hosts: %w", err)
		}
		hosts = string(data)
	} else if len(ips) > 0 {
		hosts += ips[0] + "\t" + hostname + "\n"
	}
	for name, content := range map[string]string{"hostname": hostname + "\n", "resolv.conf": resolv, "hosts": hosts} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return fmt.Errorf("write pod %s: %w", name, err)
		}
	}
	return nil
}

// resolvConf renders the pod's DNS configuration, or the host's when it has none.
func resolvConf(dns *runtimeapi.DNSConfig) (string, error) {
	if len(dns.GetServers()) == 0 && len(dns.GetSearches()) == 0 && len(dns.GetOptions()) == 0 {
		data, err := os.ReadFile("/etc/resolv.conf")
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("read host /etc/resolv.conf: %w", err)
		}
		return string(data), nil
	}
	var b strings.Builder
	for _, srv := range dns.GetServers() {
		b.WriteString("nameserver " + srv + "\n")
	}
	if len(dns.GetSearches()) > 0 {
		b.WriteString("search " + strings.Join(dns.GetSearches(), " ") + "\n")
	}
	if len(dns.GetOptions()) > 0 {
		b.WriteString("options " + strings.Join(dns.GetOptions(), " ") + "\n")
	}
	return b.String(), nil
}

// newID returns a 64-hex-digit identifier, as containerd's.
func newID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
