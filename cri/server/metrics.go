package server

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/enroot-cri/enroot-cri/ledger"
)

var (
	containersDesc = prometheus.NewDesc("enroot_cri_containers", "Containers by state.", []string{"state"}, nil)
	sandboxesDesc  = prometheus.NewDesc("enroot_cri_sandboxes", "Pod sandboxes by state.", []string{"state"}, nil)
	imagesDesc     = prometheus.NewDesc("enroot_cri_images", "Images in the store.", nil, nil)
	storeDesc      = prometheus.NewDesc("enroot_cri_image_store_bytes", "Disk space the image store uses.", nil, nil)
	holdingsDesc   = prometheus.NewDesc("enroot_cri_gpu_holdings", "GPUs and MIG slices held in the node ledger, by holder kind.", []string{"holder"}, nil)
	slurmCPUsDesc  = prometheus.NewDesc("enroot_cri_slurm_cpus", "CPUs Slurm jobs hold, from the node ledger.", nil, nil)
)

// stateCollector reports the daemon's state when Prometheus scrapes.
type stateCollector struct{ s *Server }

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{containersDesc, sandboxesDesc, imagesDesc, storeDesc, holdingsDesc, slurmCPUsDesc} {
		ch <- d
	}
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	containers := map[string]float64{containerCreated: 0, containerRunning: 0, containerExited: 0}
	for _, r := range s.recs.allContainers() {
		containers[r.State]++
	}
	for state, n := range containers {
		ch <- prometheus.MustNewConstMetric(containersDesc, prometheus.GaugeValue, n, state)
	}
	pods := map[string]float64{podReady: 0, podNotReady: 0}
	for _, p := range s.recs.allPods() {
		pods[p.State]++
	}
	for state, n := range pods {
		ch <- prometheus.MustNewConstMetric(sandboxesDesc, prometheus.GaugeValue, n, state)
	}
	if s.images != nil {
		ch <- prometheus.MustNewConstMetric(imagesDesc, prometheus.GaugeValue, float64(len(s.images.List())))
		if u, err := s.images.Usage(); err == nil {
			ch <- prometheus.MustNewConstMetric(storeDesc, prometheus.GaugeValue, float64(u.Bytes))
		}
	}
	if claims, err := s.ledger.Read(); err == nil {
		held := map[string]float64{ledger.HolderPod: 0, ledger.HolderSlurm: 0}
		for _, h := range claims.Devices {
			held[h.Kind]++
		}
		for kind, n := range held {
			ch <- prometheus.MustNewConstMetric(holdingsDesc, prometheus.GaugeValue, n, kind)
		}
		ch <- prometheus.MustNewConstMetric(slurmCPUsDesc, prometheus.GaugeValue, float64(len(claims.SlurmCPUs())))
	}
}
