"""Tools above the applications: loading any run (`rnnkit.load`), exporting any model.

They work across applications through each application's ``load``; an application never
imports them.
"""
