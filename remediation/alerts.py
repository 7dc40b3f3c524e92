"""Log lines that the alert rules in `infra/` search for.

The Bicep's log search queries quote these strings; tests/test_infra.py keeps the two in
step, and the tests that make each line happen check its wording.
"""

# Logged (at ERROR) once when a remediation ends Failed, followed by its id, step and reason.
REMEDIATION_FAILED = "RemediationFailed"

# What the Functions host logs when a queue message has failed `maxDequeueCount` times:
# "Message has reached MaxDequeueCount of 5. Moving message to queue 'remediation-steps-poison'."
# (Microsoft.Azure.WebJobs.Extensions.Storage QueueProcessor). The local runner logs the same.
POISON_MESSAGE = "Moving message to queue"
