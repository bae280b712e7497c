"""The verbs: attach, change rules, detach, upgrade, open and list. Each takes the pin
root as ``pin_root`` (default: $PINGKILLER_PIN_ROOT, else /sys/fs/bpf/pingkiller)."""
