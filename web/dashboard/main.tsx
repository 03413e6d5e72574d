import { mount } from '../mount.js';
import { DashboardApp } from './dashboard-app.js';

mount(DashboardApp);
