package config

// DefaultTOML is the documented default configuration. `enroot-cri config` prints it
// and `enroot-cri serve --config` accepts it unchanged.
const DefaultTOML = `# enroot-cri configuration (TOML). Every key is shown with its default value.
# An unknown key is an error that names the key and this file.

# CRI socket the kubelet and crictl connect to (mode 0660, owner root).
socket = "/run/enroot-cri/enroot-cri.sock"
# Persistent state: the squashfs image store, pod and container records.
root = "/var/lib/enroot-cri"
# Volatile state: sockets, pinned namespaces, mounts, exit files.
state = "/run/enroot-cri"
# debug | info | warn | error
log_level = "info"
# text | json
log_format = "text"
# RuntimeClass handler used when a pod names none; must have a [runtimes.<handler>] table.
default_runtime = "enroot"

[images]
# mksquashfs options for new images. Empty: ENROOT_SQUASH_OPTIONS from the Enroot
# configuration ([enroot] config_dir), else Enroot's default "-comp lzo -noD -exit-on-error".
squash_options = ""
# Layers downloaded at the same time, across all pulls (1 to 1000).
max_concurrent_downloads = 10

# One table per registry host; "*" matches any host. Example:
# [registries."registry.k8s.io"]
# mirrors = ["http://127.0.0.1:5000"]   # tried in order before the host itself
# insecure = false                      # allow plain HTTP and unverified TLS to this host and its mirrors

[enroot]
# Enroot configuration directory: enroot.conf, enroot.conf.d, environ.d, mounts.d, hooks.d.
config_dir = "/etc/enroot"

[cni]
# The first network configuration (.conf, .conflist, .json) in this directory, by name.
conf_dir = "/etc/cni/net.d"
# Where the CNI plugins are looked for, in order.
bin_dirs = ["/opt/cni/bin", "/usr/lib/cni"]

[cgroups]
# cgroupfs | systemd (the kubelet's cgroupDriver)
driver = "cgroupfs"
# Slurm's cgroup.conf: containers get what slurmd gives a step; absent: Slurm's defaults.
slurm_cgroup_conf = "/etc/slurm/cgroup.conf"

[streaming]
# exec/attach/port-forward server; must be on loopback. Port 0 picks a free port.
address = "127.0.0.1:0"

[metrics]
# Prometheus metrics address, e.g. "127.0.0.1:9464"; empty disables.
address = ""

[gpus]
# Program that reads NVML (it needs libnvidia-ml.so.1); empty: enroot-cri-nvml next to
# the enroot-cri executable.
nvml_helper = ""
# The node's GPU/MIG ledger shared with "enroot-cri slurm prolog/epilog"; empty: <root>/gpu-ledger.json.
ledger = ""
# Where the NVIDIA device nodes are.
dev_root = "/dev"
# The MIG capability minors (gpu<N>/gi<G>/ci<C>/access lines).
mig_minors = "/proc/driver/nvidia-caps/mig-minors"
# CDI specs used for driver files when the Enroot configuration has no NVIDIA hook.
cdi_spec_dirs = ["/etc/cdi", "/var/run/cdi"]
# Fail the Slurm job when "enroot-cri slurm prolog" fails (default: log and let it run).
prolog_strict = false
# Advertise GPUs (nvidia.com/gpu) and MIG slices (nvidia.com/mig-<profile>) to the kubelet
# as a device plugin; slices Slurm jobs hold are reported unhealthy.
device_plugin = false
# The kubelet's device plugin directory (its registration socket is kubelet.sock there).
device_plugin_dir = "/var/lib/kubelet/device-plugins"

# One table per RuntimeClass handler (the RuntimeClass's "handler" field names it).
[runtimes.enroot]
# Let pods of this handler run privileged containers.
allow_privileged = false
# Seccomp profile for containers that ask for none: "unconfined" | "runtime/default".
default_seccomp = "unconfined"
# Enroot configuration directory for this handler's pods; empty: [enroot] config_dir.
enroot_config_dir = ""
# Skip the Enroot hooks.d scripts for this handler's pods.
disable_hooks = false
# Enroot's remapped root for pods without a user namespace of their own: a user namespace
# mapping only root, to the host IDs below, and Enroot's seccomp filter (chown and set*id
# succeed without effect). Containers then run as root only.
remap_root = false
remap_root_uid = 65534
remap_root_gid = 65534
`
