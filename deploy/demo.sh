#!/usr/bin/env bash
# The one-command demo: set up and run pgod on a local repository with a real container.
# Not yet: it arrives with the supervisor, gateway and deploy work (issues 4-6). Until then,
# build with tests/run.sh and try `build/bin/pgod --check -c deploy/pgo.toml.example`.
echo "deploy/demo.sh: not yet — the demo needs the supervisor and gateway, which are not built yet." >&2
echo "Meanwhile: tests/run.sh, then build/bin/pgod --check -c deploy/pgo.toml.example" >&2
exit 1
