from django.contrib import admin
from django.urls import path

from staff.service import views

urlpatterns = [
    path('', views.home, name='home'),
    path('login/', views.login_view, name='login'),
    path('logout/', views.logout_view, name='logout'),
    path('password/', views.password_view, name='password'),
    path('submissions/<int:submission_id>/', views.submission_view, name='submission'),
    path('submissions/<int:submission_id>/solution.py', views.submission_file, name='file'),
    path('submissions/<int:submission_id>/training', views.request_training, name='training'),
    path('ta/', views.gradebook, name='gradebook'),
    path('ta/gradebook.csv', views.gradebook_csv, name='gradebook_csv'),
    path('ta/students/<str:username>/', views.student_view, name='student'),
    path('ta/rejudge', views.rejudge, name='rejudge'),
    path('ta/queue/', views.queue_view, name='queue'),
    path('ta/similarity/', views.similarity_view, name='similarity'),
    path('ta/similarity/recompute', views.similarity_recompute, name='similarity_recompute'),
    path('ta/similarity/<int:report_id>/<int:rank>/', views.similarity_pair,
         name='similarity_pair'),
    path('admin/', admin.site.urls),
]
