#!/usr/bin/env bash
# `make test-swarm`: a three-node swarm on this machine, the backend conformance suite and
# the failure tests against it, then nothing left (whatever happened).
set -euo pipefail
cd "$(dirname "$0")/../.."
here=tests/swarm
if [ "$(id -u)" != 0 ]; then
    echo "make test-swarm starts engines in network namespaces: run it as root" >&2
    exit 2
fi
python=${PYTHON:-.venv/bin/python}
dir=$(mktemp -d "${TMPDIR:-/tmp}/sbx-swarm.XXXXXX")
trap '"$here/cluster.sh" down "$dir"' EXIT
trap 'exit 130' INT TERM
"$here/cluster.sh" up "$dir"
env_file=$dir/env
"$here/cluster.sh" env "$dir" >"$env_file"
set -a
# shellcheck disable=SC1090
. "$env_file"
set +a
export SBXTEST_BACKENDS=swarm SBXTEST_IMAGE=${SBXTEST_IMAGE:-base}
# A killed supervisor's guests exit after this much silence (the heartbeat pings every 2 s).
export SBX_SWARM__GUEST_SILENCE=${SBX_SWARM__GUEST_SILENCE:-10}
# The tests run in the swarm's own network namespace: the engines are reachable there only.
in_swarm() { nsenter --net="/run/netns/$SBXTEST_SWARM_HUB" "$@"; }
status=0
in_swarm "$python" -m pytest ${PYTEST_ARGS:-} tests/conformance || status=$?
in_swarm "$python" -m pytest ${PYTEST_ARGS:-} -p no:randomly tests/swarm || status=$?
exit $status
