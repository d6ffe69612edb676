"""Every benchmark, one after another (`make bench`). Each prints its own figures, budgets and ratios."""
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

for script in ("core_bench.py", "data_bench.py", "objectives_bench.py", "sequence_bench.py", "app_bench.py",
               "report_bench.py", "ray_bench.py", "wise_bench.py", "curve_bench.py", "cli_files.py"):
    print(f"\n== {script} ==", flush=True)
    subprocess.run([sys.executable, str(HERE / script)], check=False)
