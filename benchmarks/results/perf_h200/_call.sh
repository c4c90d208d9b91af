# Sourced by the run_*.sh device calls here: run NAME LIMIT ARGS... runs `python3 ARGS` for at
# most LIMIT seconds, less if the call's end ($END) is nearer, into $D/NAME.log, and records its
# exit code in $D/calls.log.
run() {
  local name=$1 limit=$2; shift 2
  local left=$((END - $(date +%s) - 15)); [ $left -lt $limit ] && limit=$left
  [ $limit -gt 20 ] || { echo "$name skipped" >> $D/calls.log; return; }
  timeout $limit python3 "$@" > $D/$name.log 2>&1
  echo "$name rc=$? $(date +%T)" >> $D/calls.log
}
