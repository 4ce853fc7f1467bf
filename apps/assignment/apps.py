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


def _on_cases_waiting(sender, queue_ids=(), **kwargs) -> None:
    """Cases started waiting: ask for a batch now rather than at the next beat."""
    from apps.assignment.services import assignment_batch_request

    assignment_batch_request()


def _on_case_agents_changed(sender, agent_ids=(), **kwargs) -> None:
    """Runs after commit already: the agents' workspaces show their cases as they are now."""
    from apps.assignment.realtime import agent_state_publish

    agent_state_publish(agent_ids)
