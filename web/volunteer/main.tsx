import { mount } from '../mount.js';
import { VolunteerApp } from './volunteer-app.js';

mount(VolunteerApp);
