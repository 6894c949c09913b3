#!/usr/bin/env bash
# The demo: sets up the machine, builds vfvm and the images, boots the
# emulated SR-IOV host and, inside it, `vfvm run`s a guest with a VF passed
# through at slot 5 that pings the PF. The console streams to the terminal.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bash "$here/setup-host.sh"
cd "$(dirname "$here")"
exec cargo run -q -p vfvm-tests --example demo
