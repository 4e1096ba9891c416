"""A minimal Django project whose tagged log records become Vibefollow events.

``settings.LOGGING`` puts ``vf_otel.VibefollowHandler`` on the root logger (configured
from ``VIBEFOLLOW_*`` variables), and :mod:`django_site.middleware` runs each view inside
``vf_otel.user(request.user)``. ``examples/integrations/django_demo.py`` drives it.
"""
