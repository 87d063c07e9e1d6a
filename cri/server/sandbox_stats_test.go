package server

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/enroot-cri/enroot-cri/cri/network"
)

func TestNetworkUsageAlwaysHasADefaultInterface(t *testing.T) {
	now := time.Unix(1700000000, 0)
	eth0 := network.Counters{Name: "eth0", C: [16]uint64{0: 100, 2: 1, 8: 200, 10: 2}}
	net1 := network.Counters{Name: "net1", C: [16]uint64{0: 7}}

	u := networkUsage([]network.Counters{net1, eth0}, now)
	require.NotNil(t, u)
	assert.Equal(t, "eth0", u.DefaultInterface.Name)
	assert.Equal(t, uint64(100), u.DefaultInterface.RxBytes.Value)
	assert.Equal(t, uint64(2), u.DefaultInterface.TxErrors.Value)
	assert.Len(t, u.Interfaces, 2)

	u = networkUsage([]network.Counters{net1}, now)
	require.NotNil(t, u.DefaultInterface, "no eth0: the first interface")
	assert.Equal(t, "net1", u.DefaultInterface.Name)

	assert.Nil(t, networkUsage(nil, now), "only lo (a pod being torn down): no usage at all")
}
