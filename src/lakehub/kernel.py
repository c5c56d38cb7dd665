"""The kernel launcher every notebook environment's kernel spec runs: ipykernel, as is."""

import runpy

if __name__ == "__main__":
    runpy.run_module("ipykernel_launcher", run_name="__main__")
