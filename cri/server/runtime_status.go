package server

import (
	"context"
	"encoding/json"
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Status reports the runtime and network conditions. The network is ready when the
// CNI configuration directory holds a network configuration.
func (s *Server) Status(ctx context.Context, req *runtimeapi.StatusRequest) (*runtimeapi.StatusResponse, error) {
	runtimeReady := &runtimeapi.RuntimeCondition{Type: runtimeapi.RuntimeReady, Status: true}
	networkReady := &runtimeapi.RuntimeCondition{Type: runtimeapi.NetworkReady, Status: true}
	if err := s.network.Ready(); err != nil {
		networkReady.Status = false
		networkReady.Reason = "NetworkPluginNotReady"
		networkReady.Message = err.Error()
	}
	resp := &runtimeapi.StatusResponse{Status: &runtimeapi.RuntimeStatus{
		Conditions: []*runtimeapi.RuntimeCondition{runtimeReady, networkReady},
	}, RuntimeHandlers: s.runtimeHandlers(),
		Features: &runtimeapi.RuntimeFeatures{SupplementalGroupsPolicy: true}}
	if req.GetVerbose() {
		keys, err := s.cfg.Keys()
		if err != nil {
			return nil, err
		}
		cfg, err := json.Marshal(keys)
		if err != nil {
			return nil, fmt.Errorf("encode configuration: %w", err)
		}
		resp.Info = map[string]string{"config": string(cfg)}
	}
	return resp, nil
}

// runtimeHandlers lists the handlers and their features: the default ("") and each
// configured one.
func (s *Server) runtimeHandlers() []*runtimeapi.RuntimeHandler {
	features := func() *runtimeapi.RuntimeHandlerFeatures {
		return &runtimeapi.RuntimeHandlerFeatures{RecursiveReadOnlyMounts: true, UserNamespaces: true}
	}
	out := []*runtimeapi.RuntimeHandler{{Name: "", Features: features()}}
	for _, h := range s.cfg.RuntimeHandlers() {
		out = append(out, &runtimeapi.RuntimeHandler{Name: h, Features: features()})
	}
	return out
}
