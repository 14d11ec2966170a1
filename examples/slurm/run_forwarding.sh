# Sourced (from the repository root) by examples/slurm_resume.sh and examples/slurm/grid_array.sh: the signal handling
# both share. `run_forwarding CMD...` runs CMD in the background and waits for it (bash runs a trap only between
# commands). Slurm's time-limit warning, SIGUSR1 to the job's shell alone (--signal=B:USR1@N), is passed on to CMD as
# the SIGTERM the scripts expect; Slurm's own SIGTERM, which reaches every process of the job and so the run too, is
# not passed on (a second SIGTERM makes a run quit at once without writing resume.pt). Sets rc (CMD's exit code),
# warned and ended; returns 0 when the job should requeue itself: CMD exited 3 (interrupted with resume.pt written,
# or waiting for another run's output) or 143 (our SIGTERM came during its start-up) after the warning, or 3 while
# Slurm did not end the job.
run_forwarding() {
  pid= warned=0 ended=0 signalled=0 rc=
  trap 'signalled=1 warned=1; [[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null' USR1
  trap 'signalled=1 ended=1' TERM
  "$@" &
  pid=$!
  (( warned )) && kill -TERM "$pid" 2>/dev/null  # the warning came while it was starting
  local status
  while :; do
    signalled=0
    wait "$pid"
    status=$?
    (( status == 127 )) && break  # already reported
    rc=$status
    (( signalled )) || break      # CMD's exit code, not a trap cutting the wait short
  done
  (( (warned && (rc == 3 || rc == 143)) || (rc == 3 && !ended) ))
}
