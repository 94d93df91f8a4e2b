"""Privacy auditing: what attack scores prove about epsilon (`plugins.load()` imports the modules that register):

  epsilon   Clopper-Pearson lower bounds on epsilon from any attack's scores, its threshold chosen apart from the
            examples it is judged on; the `audit` config section (the report's empirical_epsilon section reads it)

One-run auditing with canaries is a protocol: experiments/canaries.py.
"""
