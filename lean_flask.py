"""Flask, with the methods every request runs reading the request context directly rather than through proxies.

Flask's own preprocess_request, dispatch_request, process_response and
do_teardown_request each read the request through a context proxy by
attribute (`request.blueprints`, `request_ctx.request`): a name the proxy
itself lacks is first looked up on the proxy and fails, and Python formats
that AttributeError's message before werkzeug's `__getattr__` runs (see
request_hooks), and each walks the blueprint chain through the hook dicts.
Served under gevent, that cost a GET of one chat 58k instructions (4%),
counted by callgrind. The methods here are Flask 3.1's own, in the same order
and with the same results, with the request context taken once and each
endpoint's hooks collected once; tests/test_lean_flask.py holds
them to Flask's behaviour (hook order, a hook's early answer, teardown on
error, automatic OPTIONS, routing errors).
"""
import sys
from typing import NamedTuple

from flask import Flask
from flask.globals import request_ctx
from flask.signals import request_tearing_down

_NOT_GIVEN = object()


class RequestHooks(NamedTuple):
    url_value: tuple
    before: tuple
    after: tuple
    teardown: tuple


class LeanFlask(Flask):
    """Flask, its per-request methods leaner (the module's docstring), its behaviour the same."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._callable_as_sync = {}
        self._hooks_by_endpoint = {}

    def ensure_sync(self, func):
        """Flask asks whether each hook and the view is a coroutine function on every request
        (inspect.iscoroutinefunction: 2.5% of the instructions of a GET of one chat); the answer never
        changes for a function, so it is asked once."""
        ready = self._callable_as_sync.get(func)
        if ready is None:
            ready = self._callable_as_sync[func] = super().ensure_sync(func)
        return ready

    def _hooks_of(self, current):
        """The hooks of a request (`current`, matched or not), in the order Flask runs them: looked up once per
        endpoint, as Flask walks the blueprint chain through its dicts on every request. Kept only once the app
        has served a request, after which Flask refuses a new hook, so a chain kept stays right (a request
        context pushed by hand before then, in a test or a shell, gets them afresh)."""
        rule = current.url_rule
        endpoint = None if rule is None else rule.endpoint
        hooks = self._hooks_by_endpoint.get(endpoint)
        if hooks is None:
            hooks = self._collect_hooks(current.blueprints)
            if self._got_first_request:
                self._hooks_by_endpoint[endpoint] = hooks
        return hooks

    def _collect_hooks(self, blueprints):
        before_names, after_names = (None, *reversed(blueprints)), (*blueprints, None)
        return RequestHooks(
            url_value=tuple(func for name in before_names for func in self.url_value_preprocessors.get(name, ())),
            before=tuple(self.ensure_sync(func) for name in before_names
                         for func in self.before_request_funcs.get(name, ())),
            after=tuple(self.ensure_sync(func) for name in after_names
                        for func in reversed(self.after_request_funcs.get(name, ()))),
            teardown=tuple(self.ensure_sync(func) for name in after_names
                           for func in reversed(self.teardown_request_funcs.get(name, ()))))

    def preprocess_request(self):
        current = request_ctx._get_current_object().request
        hooks = self._hooks_of(current)
        for url_func in hooks.url_value:
            url_func(current.endpoint, current.view_args)
        for before_func in hooks.before:
            answer = before_func()
            if answer is not None:
                return answer
        return None

    def dispatch_request(self):
        current = request_ctx._get_current_object().request
        if current.routing_exception is not None:
            self.raise_routing_exception(current)
        rule = current.url_rule
        if getattr(rule, "provide_automatic_options", False) and current.method == "OPTIONS":
            return self.make_default_options_response()
        return self.ensure_sync(self.view_functions[rule.endpoint])(**current.view_args)

    def process_response(self, response):
        context = request_ctx._get_current_object()
        for func in context._after_request_functions:
            response = self.ensure_sync(func)(response)
        for func in self._hooks_of(context.request).after:
            response = func(response)
        if not self.session_interface.is_null_session(context._session):
            self.session_interface.save_session(self, context._session, response)
        return response

    def do_teardown_request(self, exc=_NOT_GIVEN):
        if exc is _NOT_GIVEN:
            exc = sys.exc_info()[1]
        for func in self._hooks_of(request_ctx._get_current_object().request).teardown:
            func(exc)
        request_tearing_down.send(self, _async_wrapper=self.ensure_sync, exc=exc)
