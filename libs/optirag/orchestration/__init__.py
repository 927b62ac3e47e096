"""Running the jobs: launchers (local, local clusters, real clusters), the nightly chain
without Airflow, promotion, publishing and the spark-submit bundle (``dist``).

A regular package on purpose: spark-submit ships optirag as a zip (--py-files), and
zipimport does not find namespace packages, so a folder without this file is missing on
the executors and on a driver started by spark-submit.
"""
