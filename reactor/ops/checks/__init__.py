"""`reactor check`'s checks: each a function returning a `result.CheckResult`.

`report.run_checks` runs them all in the order a person would fix things.
"""
