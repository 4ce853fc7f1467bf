from celery.signals import worker_init, worker_process_init
from django.apps import AppConfig

from apps.cases.signals import case_agents_changed, cases_waiting


class AssignmentConfig(AppConfig):
    name = "apps.assignment"
    label = "assignment"

    def ready(self) -> None:
        # The demo module also holds the demo-only heartbeat task, registered with Celery here.
        from apps.assignment import demo, metrics
        from apps.core.demo import register_seeder
        from apps.core.metrics import register_collector

        register_collector(metrics.collect)
        register_seeder(self.label, demo.seed)
        cases_waiting.connect(_on_cases_waiting, dispatch_uid="assignment.on_demand_batch")
        case_agents_changed.connect(_on_case_agents_changed, dispatch_uid="assignment.workspace_state")
        # Each worker process reads the roster as it starts (below), connected only once the
        # worker has started: it then runs after Celery's Django fixup, which closes the database
        # connections a child process inherits from its parent.
        worker_init.connect(_on_worker_init, dispatch_uid="assignment.worker_init")


def _on_worker_init(**kwargs) -> None:
    worker_process_init.connect(_on_worker_process_init, dispatch_uid="assignment.worker_warm")


def _on_worker_process_init(**kwargs) -> None:
    """A worker process starts: its first batch should cost what the next ones do."""
    from apps.assignment.services import assignment_worker_warm

    assignment_worker_warm()


def _on_cases_waiting(sender, queue_ids=(), **kwargs) -> None:
    """Cases started waiting: ask for a batch now rather than at the next beat."""
    from apps.assignment.services import assignment_batch_request

    assignment_batch_request()


def _on_case_agents_changed(sender, agent_ids=(), **kwargs) -> None:
    """Runs after commit already: the agents' workspaces show their cases as they are now."""
    from apps.assignment.realtime import agent_state_publish

    agent_state_publish(agent_ids)
