package server

import (
	"context"
	"encoding/json"
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// PodSandboxStatus reports a pod's state, network and namespaces.
func (s *Server) PodSandboxStatus(ctx context.Context, req *runtimeapi.PodSandboxStatusRequest) (*runtimeapi.PodSandboxStatusResponse, error) {
	pod, err := s.recs.pod(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	st := podStatus(pod)
	resp := &runtimeapi.PodSandboxStatusResponse{Status: st}
	if req.GetVerbose() {
		info, err := json.Marshal(map[string]any{"sandbox": pod.Sandbox, "handler": pod.Handler, "ips": pod.IPs})
		if err != nil {
			return nil, fmt.Errorf("encode pod info: %w", err)
		}
		resp.Info = map[string]string{"info": string(info)}
	}
	return resp, nil
}

func podState(p *podRecord) runtimeapi.PodSandboxState {
	if p.State == podReady {
		return runtimeapi.PodSandboxState_SANDBOX_READY
	}
	return runtimeapi.PodSandboxState_SANDBOX_NOTREADY
}

func podStatus(p *podRecord) *runtimeapi.PodSandboxStatus {
	cfg := p.config
	st := &runtimeapi.PodSandboxStatus{
		Id: p.ID, Metadata: cfg.GetMetadata(), State: podState(p), CreatedAt: p.CreatedAt.UnixNano(),
		Labels: cfg.GetLabels(), Annotations: cfg.GetAnnotations(), RuntimeHandler: p.Handler,
		Linux: &runtimeapi.LinuxPodSandboxStatus{Namespaces: &runtimeapi.Namespace{
			Options: cfg.GetLinux().GetSecurityContext().GetNamespaceOptions(),
		}},
	}
	if len(p.IPs) > 0 {
		st.Network = &runtimeapi.PodSandboxNetworkStatus{Ip: p.IPs[0]}
		for _, ip := range p.IPs[1:] {
			st.Network.AdditionalIps = append(st.Network.AdditionalIps, &runtimeapi.PodIP{Ip: ip})
		}
	}
	return st
}
