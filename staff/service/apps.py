from django.apps import AppConfig


class ServiceConfig(AppConfig):
    name = 'staff.service'
    label = 'service'
    verbose_name = 'Checking service'
