"""Helpers for the fault suite (tests/test_faults_*.py): real processes, garbage, small disks."""
