#!/bin/sh
# Counts seconds of guest life into /run/counter: a resumed guest goes on from the saved value,
# a booted one starts again at 1.
n=0
while :; do n=$((n+1)); echo "$n" >/run/counter.tmp && mv /run/counter.tmp /run/counter; sleep 1; done
