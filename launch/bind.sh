#!/usr/bin/env bash
# bind.sh PROGRAM [ARGS...]: per-rank wrapper. Run by mpirun.sh / srun.sh once per rank, it gives
# the rank ONE accelerator and the CPU cores nearest to it, then execs PROGRAM.
#
#   local rank  <- SLURM_LOCALID | OMPI_COMM_WORLD_LOCAL_RANK | MPI_LOCALRANKID | PMI_LOCAL_RANK
#   ranks/node  <- SLURM_NTASKS_PER_NODE | OMPI_COMM_WORLD_LOCAL_SIZE | MPI_LOCALNRANKS | 1
#   device      <- the local-rank-th GPU of this node (of the list already in ROCR_VISIBLE_DEVICES /
#                  CUDA_VISIBLE_DEVICES if the launcher narrowed it; round-robin if more ranks),
#                  given to the program as GPTOSS_DEVICE=<index among the visible GPUs>. The
#                  visible list itself is left alone: the GPU IPC transport needs each rank to see
#                  its neighbours' GPUs (peer access), which narrowing to one GPU would hide.
#                  GPUs are found through /sys/class/kfd (AMD, in ROCR's order) or nvidia-smi.
#   CPU cores   <- the local_cpulist of the GPU's PCI device in /sys (NUMA node of the GPU), or, on
#                  the CPU backend / when that is unknown, an even split of the cores this process
#                  may use (1/ranks-per-node each), or GPTOSS_CPU_MAP="0-7:8-15:..." (one list per
#                  local rank, colon-separated) when given. Applied with numactl --physcpubind
#                  (+ --localalloc), else taskset -c; without either, the rank runs unbound.
#   GPTOSS_BIND=none   skips all of this (exec PROGRAM as is).
#   GPTOSS_BIND_VERBOSE=1   prints one line per rank: what it got.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: bind.sh PROGRAM [ARGS...]" >&2; exit 2; }
[ "${GPTOSS_BIND:-}" = "none" ] && exec "$@"

first_set() { for v in "$@"; do [ -n "${!v:-}" ] && { echo "${!v}"; return; }; done; echo ""; }
local_rank=$(first_set SLURM_LOCALID OMPI_COMM_WORLD_LOCAL_RANK MPI_LOCALRANKID PMI_LOCAL_RANK)
local_rank=${local_rank:-0}
local_size=$(first_set OMPI_COMM_WORLD_LOCAL_SIZE MPI_LOCALNRANKS SLURM_NTASKS_PER_NODE)
if [ -z "$local_size" ] && [ -n "${SLURM_TASKS_PER_NODE:-}" ]; then
  local_size=${SLURM_TASKS_PER_NODE%%(*}  # "4(x2)" -> 4
fi
local_size=${local_size:-1}

# ---- GPUs: vendor, count, and the PCI address of each (in the runtime's order) ----
vendor="" pci=()
if [ -d /sys/class/kfd/kfd/topology/nodes ]; then
  for n in $(ls /sys/class/kfd/kfd/topology/nodes | sort -n); do
    p=/sys/class/kfd/kfd/topology/nodes/$n/properties
    [ -f "$p" ] || continue
    simd=$(awk '$1=="simd_count"{print $2}' "$p")
    [ "${simd:-0}" -gt 0 ] || continue  # CPU node
    loc=$(awk '$1=="location_id"{print $2}' "$p")   # PCI bus<<8 | device<<3 | function
    dom=$(awk '$1=="domain"{print $2}' "$p")
    pci+=("$(printf '%04x:%02x:%02x.%x' "${dom:-0}" $((loc >> 8)) $(((loc >> 3) & 31)) $((loc & 7)))")
  done
  [ ${#pci[@]} -gt 0 ] && vendor=amd
fi
if [ -z "$vendor" ] && command -v nvidia-smi >/dev/null 2>&1; then
  mapfile -t pci < <(nvidia-smi --query-gpu=pci.bus_id --format=csv,noheader 2>/dev/null |
                     sed 's/^0000\(....\)/\1/' | tr 'A-F' 'a-f' | sed 's/^\(....:..:..\..\).*/\1/')
  [ ${#pci[@]} -gt 0 ] && vendor=nvidia
fi

device="" note=""
if [ -n "$vendor" ]; then
  var=ROCR_VISIBLE_DEVICES
  [ "$vendor" = nvidia ] && var=CUDA_VISIBLE_DEVICES
  if [ -n "${!var:-}" ]; then
    IFS=, read -r -a ids <<<"${!var}"  # the launcher narrowed the devices already
  else
    ids=()
    for i in "${!pci[@]}"; do ids+=("$i"); done
  fi
  index=$((local_rank % ${#ids[@]}))
  device=${ids[$index]}
  [ "$local_size" -gt "${#ids[@]}" ] && note=" (more ranks than GPUs: shared)"
  export GPTOSS_DEVICE=$index
fi

# ---- CPU cores ----
allowed=$(awk '/^Cpus_allowed_list/{print $2}' /proc/self/status)
expand() {  # "0-3,8" -> "0 1 2 3 8"
  local out=() part
  IFS=, read -r -a parts <<<"$1"
  for part in "${parts[@]}"; do
    if [[ $part == *-* ]]; then out+=($(seq "${part%-*}" "${part#*-}")); else out+=("$part"); fi
  done
  echo "${out[@]}"
}
cpus="" numa=""
if [ -n "${GPTOSS_CPU_MAP:-}" ]; then
  IFS=: read -r -a lists <<<"$GPTOSS_CPU_MAP"
  cpus=${lists[$((local_rank % ${#lists[@]}))]}
elif [ -n "$device" ] && [[ "$device" =~ ^[0-9]+$ ]] && [ -n "${pci[$device]:-}" ] &&
     [ -r "/sys/bus/pci/devices/${pci[$device]}/local_cpulist" ]; then
  cpus=$(cat "/sys/bus/pci/devices/${pci[$device]}/local_cpulist")
  numa=$(cat "/sys/bus/pci/devices/${pci[$device]}/numa_node" 2>/dev/null || echo "")
  # Ranks sharing one NUMA domain (e.g. the two GCDs of an MI250 package) split its cores.
  mine=() all=($(expand "$cpus")) sharers=0 idx=0
  for i in "${!pci[@]}"; do
    c=$(cat "/sys/bus/pci/devices/${pci[$i]}/local_cpulist" 2>/dev/null || echo "")
    if [ "$c" = "$cpus" ]; then
      [ "$i" = "$device" ] && idx=$sharers
      sharers=$((sharers + 1))
    fi
  done
  if [ "$sharers" -gt 1 ] && [ "$local_size" -ge "$sharers" ]; then
    per=$(( ${#all[@]} / sharers ))
    mine=("${all[@]:$((idx * per)):$per}")
    cpus=$(IFS=,; echo "${mine[*]}")
  fi
else
  # CPU backend (or GPU without topology): an even split of the cores we may use.
  all=($(expand "$allowed"))
  if [ "$local_size" -gt 1 ] && [ "${#all[@]}" -ge "$local_size" ]; then
    per=$(( ${#all[@]} / local_size ))
    mine=("${all[@]:$((local_rank * per)):$per}")
    cpus=$(IFS=,; echo "${mine[*]}")
  fi
  # Fewer cores than ranks (oversubscribed, e.g. CI): no binding, ranks float.
fi

# Only cores this process is allowed to use (cgroups / Slurm may have restricted us).
if [ -n "$cpus" ]; then
  ok=() allowed_set=" $(expand "$allowed") "
  for c in $(expand "$cpus"); do [[ $allowed_set == *" $c "* ]] && ok+=("$c"); done
  cpus=$(IFS=,; echo "${ok[*]}")
fi

binder=()
if [ -n "$cpus" ]; then
  if command -v numactl >/dev/null 2>&1; then
    binder=(numactl --physcpubind="$cpus" --localalloc)
  elif command -v taskset >/dev/null 2>&1; then
    binder=(taskset -c "$cpus")
  fi
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$( [ -n "$cpus" ] && expand "$cpus" | wc -w || echo "" )}
[ -z "$OMP_NUM_THREADS" ] && unset OMP_NUM_THREADS

if [ "${GPTOSS_BIND_VERBOSE:-0}" = 1 ]; then
  echo "bind: $(hostname -s) local rank $local_rank/$local_size:" \
       "${vendor:-no} GPU${device:+ $device}${note}," \
       "cpus ${cpus:-unbound}${numa:+ (NUMA $numa)}${binder:+ via ${binder[0]}}" >&2
fi
exec "${binder[@]}" "$@"
