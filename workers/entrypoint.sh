#!/bin/sh
# Start one sleep-time worker (drains on SIGTERM; exit code 1 if jobs were left to be
# reclaimed). Arguments are passed on: entrypoint.sh --concurrency 4 --metrics-port 9464
exec sleeptime worker "$@"
