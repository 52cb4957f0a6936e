"""Task names and queues (workers.queues): every task is routed to its own queue."""

from __future__ import annotations

from fnmatch import fnmatch

from workers import queues


def test_every_task_is_routed_to_the_queue_it_names_and_only_there() -> None:
    assert len({task.name for task in queues.TASKS}) == len(queues.TASKS)
    for task in queues.TASKS:
        routes = [route for glob, route in queues.ROUTES.items() if fnmatch(task.name, glob)]
        assert routes == [{"queue": task.queue, "routing_key": task.queue}], task.name
        assert task.route == routes[0]
    assert {task.queue for task in queues.TASKS} == set(queues.QUEUE_NAMES)
