"""The feed service's XMPP side: feeds polled into pubsub nodes, followed by chat, ad-hoc
commands, a pubsub subscribe or a feed's contact, and administered by admins.

Dependencies point one way: ``status``, ``refusal``, ``fetching``, ``avatar``, ``delivery`` and
``pubsub_component`` need nothing of the package; ``chat`` → ``contacts`` → ``manager`` (with
``publisher``) → ``control`` → ``module`` → ``admin_stats`` → ``admin_commands``. The composition
root builds :class:`~.module.FeedsModule` and :class:`~.admin_commands.ServiceAdminModule`.
"""
