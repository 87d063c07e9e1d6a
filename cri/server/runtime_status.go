package server

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Status reports the runtime and network conditions. The network is ready when the
// CNI configuration directory holds a network configuration.
func (s *Server) Status(ctx context.Context, req *runtimeapi.StatusRequest) (*runtimeapi.StatusResponse, error) {
	runtimeReady := &runtimeapi.RuntimeCondition{Type: runtimeapi.RuntimeReady, Status: true}
	networkReady := &runtimeapi.RuntimeCondition{Type: runtimeapi.NetworkReady, Status: true}
	if conf, err := cniConfigFiles(s.cfg.CNI.ConfDir); err != nil || len(conf) == 0 {
		networkReady.Status = false
		networkReady.Reason = "NetworkPluginNotReady"
		networkReady.Message = fmt.Sprintf("no CNI network configuration in %s", s.cfg.CNI.ConfDir)
		if err != nil {
			networkReady.Message += ": " + err.Error()
		}
	}
	resp := &runtimeapi.StatusResponse{Status: &runtimeapi.RuntimeStatus{
		Conditions: []*runtimeapi.RuntimeCondition{runtimeReady, networkReady},
	}}
	if req.GetVerbose() {
		cfg, err := json.Marshal(s.cfg)
		if err != nil {
			return nil, fmt.Errorf("encode configuration: %w", err)
		}
		resp.Info = map[string]string{"config": string(cfg)}
	}
	return resp, nil
}

// cniConfigFiles lists the network configurations libcni would load from dir.
func cniConfigFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read CNI configuration directory: %w", err)
	}
	var files []string
	for _, e := range entries {
		switch filepath.Ext(e.Name()) {
		case ".conf", ".conflist", ".json":
			if !e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
				files = append(files, filepath.Join(dir, e.Name()))
			}
		}
	}
	return files, nil
}
