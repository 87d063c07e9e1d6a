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
# RuntimeClass handler used when a pod names none (the node's system pods among them);
# must have a [runtimes.<handler>] table.
default_runtime = "kubernetes"

[images]
# mksquashfs options for new images. Empty: ENROOT_SQUASH_OPTIONS from the Enroot
# configuration ([enroot] config_dir), else Enroot's default "-comp lzo -noD -exit-on-error".
squash_options = ""
# Layers downloaded at the same time, across all pulls (1 to 1000).
max_concurrent_downloads = 10
# Bounds on one pull against hostile images (0: no bound): uncompressed bytes of all its
# layers, files and directories in all its layers, and its wall time.
max_image_bytes = 274877906944
max_entries = 10000000
pull_timeout = "2h0m0s"
# A pull stops when the store's filesystem would have less free space than this.
min_free_bytes = 1073741824
# The image socket (mode 0666; callers are known by their uid): "enroot-cri images import"
# (root) and the pyxis importer reach the image store through it. Empty: images.sock in
# the state directory.
socket = ""
# Let Slurm jobs of every user run the store's images through the pyxis importer
# (plugstack.conf: required spank_pyxis.so importer=/usr/libexec/enroot-cri/pyxis-importer):
# each job is handed a link to the image only its user can open, and an image is handed
# to a user only when the user's own registry credentials (or anonymous access) reach
# its manifest. Root's jobs are always served. See docs/images.md.
share_with_jobs = false

# Shared image directories: Enroot images (enroot import's REPO+TAG.sqsh files, "/" in
# REPO written "+") served under a registry name of the site's choice and mounted where
# they are, never copied. Example:
# "sqsh.site" = "/shared/images"   # image sqsh.site/nvidia/pytorch:24.05 is /shared/images/nvidia+pytorch+24.05.sqsh
[images.shared]

# One table per registry host; "*" matches any host. Example:
# [registries."registry.k8s.io"]
# mirrors = ["http://127.0.0.1:5000"]   # tried in order before the host itself
# insecure = false                      # allow plain HTTP and unverified TLS to this host and its mirrors

[enroot]
# Enroot configuration directory: enroot.conf, enroot.conf.d, environ.d, mounts.d, hooks.d.
config_dir = "/etc/enroot"
# Enroot's library directory (common.sh, which the stock hooks source), given to hooks as
# ENROOT_LIBRARY_PATH; empty: the first of /usr/lib/enroot, /usr/local/lib/enroot that exists.
library_path = ""

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
# Most processes and threads in one container (pids.max); 0: no limit of the runtime's own.
pids_limit = 32768

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
# Let NVIDIA_VISIBLE_DEVICES in a container's environment ask for GPUs (the NVIDIA device
# plugin's envvar strategy). Pod authors can set it too; off, GPUs come only from CDI
# devices and the gpus.enroot-cri.io annotations.
accept_env_requests = false
# Advertise GPUs (nvidia.com/gpu) and MIG slices (nvidia.com/mig-<profile>) to the kubelet
# as a device plugin; slices Slurm jobs hold are reported unhealthy.
device_plugin = false
# The kubelet's device plugin directory (its registration socket is kubelet.sock there).
device_plugin_dir = "/var/lib/kubelet/device-plugins"

# One table per RuntimeClass handler (the RuntimeClass's "handler" field names it), of one
# of two kinds on the same images, cgroup.conf confinement and GPU ledger:
#   kind = "kubernetes": what containerd and runc give a pod, no Enroot configuration.
#   kind = "enroot": what "enroot start" gives a Slurm job step under pyxis: a user
#     namespace, Enroot's seccomp filter and capabilities, the node's Enroot configuration
#     and hooks (docs/parity.md).
# A table without "kind" is of kind enroot when named enroot, else of kind kubernetes.
[runtimes.kubernetes]
kind = "kubernetes"
# Let pods of this handler run privileged containers (Pod Security admission is the gate).
allow_privileged = true
# Seccomp profile for containers that ask for none: "unconfined" | "runtime/default".
default_seccomp = "unconfined"

[runtimes.enroot]
kind = "enroot"
# Seccomp profile laid over Enroot's filter for containers that ask for none.
default_seccomp = "unconfined"
# Enroot configuration directory for this handler's pods; empty: [enroot] config_dir.
enroot_config_dir = ""
# Skip the Enroot hooks.d scripts for this handler's pods.
disable_hooks = false
# Enroot's remapped root (ENROOT_REMAP_ROOT): containers run as root inside their user
# namespace, mapped to the pod's user on the host.
remap_root = false
# Host IDs of a container that runs as root (a pod of this handler is never host root).
remap_root_uid = 65534
remap_root_gid = 65534
# Lowest host user ID a container may run as, root (remapped) aside: a pod acts as that
# user on this node, so system accounts are refused.
min_uid = 1000
`
