"""One module per governance mechanism, each holding its spec dataclasses, its load-time building and checks
(functions taking the loader) and its runtime (hooks the one transition path calls, and a mixin with the
Engine's public methods for that mechanism):

* ``assign``   — who has a case after a step, who a dispatch may pick, where a route goes
* ``collect``  — many contributors on one case: aggregation, recusal, collect deadlines
* ``approval`` — several approvers on one step (会签 / 或签 / 依次审批): rounds, acts and outcomes (an edge kind)
* ``notice``   — public notice, objections (an edge kind), publication, the public page
* ``timers``   — ``after`` timers, deadlines and escalation, ``tick`` (the clock acts as ``SYSTEM``)
* ``ranking``  — rounds, ranking by quota, closing a round (ranking outcomes are an edge kind)
* ``points``   — ledger entries a transition makes, balances
* ``spawn``    — links between processes: spawned and offered cases, prefill
* ``links``    — linked cases that move each other (``moves``, ``waits_for``), through the transition path
* ``reports``  — metrics, targets (quotas) and list page columns
* ``urge``     — 催办: reminding those a case waits for, once per period (an edge kind)
* ``cc``       — 抄送: people copied in on a case see it and cannot act (an edge kind; a transition's ``cc:``)
* ``unique``   — values no two cases may share while in given states: the claim index, the check on every move
* ``base``     — what the one transition path (``engine.transition.take``) asks of each edge kind

Certificates have no runtime logic (``state.certificate`` is a flag the web page reads).
Import modules, not names, between ``engine.transition`` and these modules: they call each other.
"""
