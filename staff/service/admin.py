from django.contrib import admin

from staff.service.models import Profile, Run, Submission

admin.site.register(Profile)
admin.site.register(Submission)
admin.site.register(Run)
