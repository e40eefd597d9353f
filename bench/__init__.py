"""omprog-ban's benchmarks against its peers (issue 6): ``python -m bench [--smoke]``.

    generate  seeded logs: five logs x {normal, flood}
    replay    omprog-ban replay / test vs fail2ban-regex on the same files
    rsyslog   a real rsyslogd: omprog-ban run vs an OK-only child
    latency   line written -> element in the kernel, at 1,000 bans/s
    flood     100,000 new addresses -> all in the kernel
    memory    RSS at rest, bytes per tracked address

See bench/README.md for how each figure is measured and the latest table.
"""
